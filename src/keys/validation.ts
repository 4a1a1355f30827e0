/**
 * Request field validation. Every check runs before any read or write, and a failure throws
 * invalidArgument(<proto field name>, <what is wrong>), so a bad request changes nothing.
 *
 * Limits (documented for API users):
 *   project, scope  1..128 chars of [A-Za-z0-9._:-], starting with a letter or digit
 *   name            1..255 characters, no control characters (Unicode category Cc)
 *   grantee         1..128 chars of [A-Za-z0-9._:@-], starting with a letter or digit
 *   id, key_id, grant_id   a UUID (8-4-4-4-12 hex digits; upper case is accepted and lower-cased)
 *   algorithm       "AES"
 *   bit_length      128 or 256
 *   material        16 or 32 bytes
 *   page_size       integer 0..1000 (0 means 100)
 *   page_token      "" or a token this service issued, at most 512 characters
 *   expires_at      a valid time in the future, at most 30 days ahead
 */
import { invalidArgument } from "../errors.js";
import type { AesBitLength, KeyAlgorithm } from "./key-model.js";

export const PROJECT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
export const GRANTEE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
export const NAME_LENGTH_MAX = 255;
export const UUID_PATTERN = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
export const PAGE_SIZE_DEFAULT = 100;
export const PAGE_SIZE_MAX = 1000;
export const PAGE_TOKEN_LENGTH_MAX = 512;
export const GRANT_DURATION_MAX_MS = 30 * 24 * 3600 * 1000;

function requireString(field: string, value: unknown): string {
  if (typeof value !== "string") throw invalidArgument(field, "must be a string");
  return value;
}

/** A project or scope name. */
export function validateProjectLike(field: "project" | "scope", value: unknown): string {
  const s = requireString(field, value);
  if (s.length === 0) throw invalidArgument(field, "is required");
  if (!PROJECT_PATTERN.test(s)) {
    throw invalidArgument(
      field,
      "must be 1..128 characters of A-Z a-z 0-9 . _ : - starting with a letter or digit",
    );
  }
  return s;
}

export function validateName(field: string, value: unknown): string {
  const s = requireString(field, value);
  const chars = [...s];
  if (chars.length === 0) throw invalidArgument(field, "is required");
  if (chars.length > NAME_LENGTH_MAX)
    throw invalidArgument(field, `must be at most ${NAME_LENGTH_MAX} characters`);
  if (/\p{Cc}/u.test(s)) throw invalidArgument(field, "must not contain control characters");
  if (/\p{Cs}/u.test(s)) throw invalidArgument(field, "is not valid Unicode (lone surrogate)");
  return s;
}

/** "" or absent means "keep the parent's name". */
export function validateOptionalName(field: string, value: unknown): string | undefined {
  if (value === undefined || value === "") return undefined;
  return validateName(field, value);
}

export function validateUuid(field: string, value: unknown): string {
  const s = requireString(field, value);
  if (s.length === 0) throw invalidArgument(field, "is required");
  if (!UUID_PATTERN.test(s)) throw invalidArgument(field, "must be a UUID");
  return s.toLowerCase();
}

export function validateAlgorithm(value: unknown): KeyAlgorithm {
  if (value !== "AES") throw invalidArgument("algorithm", "must be AES");
  return "AES";
}

export function validateBitLength(value: unknown): AesBitLength {
  if (value !== 128 && value !== 256) throw invalidArgument("bit_length", "must be 128 or 256 for AES");
  return value;
}

export function validateMaterial(value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalidArgument("material", "must be bytes");
  if (value.length !== 16 && value.length !== 32) {
    throw invalidArgument("material", `must be 16 or 32 bytes for AES, got ${value.length}`);
  }
  return value;
}

export function validatePageSize(value: unknown): number {
  if (value === undefined || value === 0) return PAGE_SIZE_DEFAULT;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > PAGE_SIZE_MAX) {
    throw invalidArgument("page_size", `must be an integer in 0..${PAGE_SIZE_MAX}`);
  }
  return value;
}

export function validatePageTokenShape(value: unknown): string {
  if (value === undefined) return "";
  const s = requireString("page_token", value);
  if (s.length > PAGE_TOKEN_LENGTH_MAX) throw invalidArgument("page_token", "is not a valid page token");
  return s;
}

export function validateGrantee(value: unknown): string {
  const s = requireString("grantee", value);
  if (s.length === 0) throw invalidArgument("grantee", "is required");
  if (!GRANTEE_PATTERN.test(s)) {
    throw invalidArgument(
      "grantee",
      "must be 1..128 characters of A-Z a-z 0-9 . _ : @ - starting with a letter or digit",
    );
  }
  return s;
}

export function validateExpiresAt(value: unknown, now: Date): Date {
  if (!(value instanceof Date) || Number.isNaN(value.getTime()))
    throw invalidArgument("expires_at", "is required");
  if (value.getTime() <= now.getTime()) throw invalidArgument("expires_at", "must be in the future");
  if (value.getTime() - now.getTime() > GRANT_DURATION_MAX_MS) {
    throw invalidArgument("expires_at", "must be at most 30 days ahead");
  }
  return new Date(value.getTime());
}

/** The request itself must be an object; the field name is the request as a whole. */
export function validateRequestObject(value: unknown): Record<string, unknown> {
  if (typeof value !== "object" || value === null) throw invalidArgument("request", "must be an object");
  return value as Record<string, unknown>;
}
