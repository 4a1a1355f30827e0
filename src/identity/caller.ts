/**
 * Who is calling, as read from a verified client certificate: the identity
 * is the certificate's common name, the role and projects its SAN URIs
 * (`urn:lockbox:role:<role>`, `urn:lockbox:project:<name>`). It lives in its
 * own folder, importing nothing, because every layer names a caller (the
 * edge establishes it, pki encodes it in certificates, the key service and
 * the audit log judge and record it) and none of them should have to import
 * another's model to do so.
 */
export interface Caller {
  /** Certificate common name. */
  identity: string;
  role: Role;
  /** Projects a service caller may use; ignored for admins (who may use any project). */
  projects: readonly string[];
}

export type Role = "admin" | "service";

export const ROLES: readonly Role[] = ["admin", "service"];

export const ROLE_URI_PREFIX = "urn:lockbox:role:";
export const PROJECT_URI_PREFIX = "urn:lockbox:project:";

export const isRole = (s: string): s is Role => (ROLES as readonly string[]).includes(s);
