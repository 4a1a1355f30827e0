/**
 * Who is calling, as read from a verified client certificate: the identity
 * is the certificate's common name, the role and projects its SAN URIs
 * (`urn:lockbox:role:<role>`, `urn:lockbox:project:<name>`).
 */
import type { Caller } from "../keys/key-model.js";

export type { Caller };
export type Role = Caller["role"];

export const ROLES: readonly Role[] = ["admin", "service"];

export const ROLE_URI_PREFIX = "urn:lockbox:role:";
export const PROJECT_URI_PREFIX = "urn:lockbox:project:";

export const isRole = (s: string): s is Role => (ROLES as readonly string[]).includes(s);
