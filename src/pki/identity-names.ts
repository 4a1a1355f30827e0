/**
 * Rules for identity names (certificate common names) and project names as
 * they appear in certificates. They are the key service's own rules
 * (src/keys/validation.ts): an identity must be usable as a grantee, a
 * project as a project, or a certificate would name someone the key service
 * can never match.
 */
import { invalidArgument } from "../errors.js";
import { GRANTEE_PATTERN, PROJECT_PATTERN } from "../keys/validation.js";

export const isValidIdentityName = (name: string): boolean => GRANTEE_PATTERN.test(name);
export const isValidProjectName = (name: string): boolean => PROJECT_PATTERN.test(name);

/** Throws INVALID_ARGUMENT naming `field` unless `name` is a valid identity name. */
export function assertValidIdentityName(field: string, name: string): void {
  if (!isValidIdentityName(name)) {
    throw invalidArgument(
      field,
      "must be 1..128 characters of A-Z a-z 0-9 . _ : @ - starting with a letter or digit",
    );
  }
}

/** Throws INVALID_ARGUMENT naming `field` unless `name` is a valid project name. */
export function assertValidProjectName(field: string, name: string): void {
  if (!isValidProjectName(name)) {
    throw invalidArgument(
      field,
      "must be 1..128 characters of A-Z a-z 0-9 . _ : - starting with a letter or digit",
    );
  }
}
