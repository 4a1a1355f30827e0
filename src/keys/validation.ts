/**
 * Request field validation. Every check runs before any read or write, and a failure throws
 * invalidArgument(<proto field name>, <what is wrong>), so a bad request changes nothing.
 *
 * Limits (documented for API users):
 *   project, scope  1..128 chars of [A-Za-z0-9._:-], starting with a letter or digit
 *   name            1..255 characters, no control characters (Unicode category Cc)
 *   grantee         1..128 chars of [A-Za-z0-9._:@-], starting with a letter or digit
 *   id, key_id, grant_id   a UUID (8-4-4-4-12 hex digits; upper case is accepted and lower-cased)
 *   algorithm       "AES" (symmetric keys); "AES" or "" (opaque and passphrase secrets)
 *   secret_type     symmetric (default), opaque or passphrase
 *   bit_length      128, 192, 256 or 512 for AES keys; declared 0..65536 for other secrets
 *   material        16, 24, 32 or 64 bytes for AES keys; 1..4000 bytes for other secrets
 *   expires_at (key)   absent, or a valid time in the future up to 9999-12-31T23:59:59.999Z
 *   client_request_id  "" or 1..128 chars of [A-Za-z0-9._:-], starting with a letter or digit
 *   service, resource_type, resource_id (consumers)   1..255 characters, no control characters
 *   page_size       integer 0..1000 (0 means 100)
 *   page_token      "" or a token this service issued, at most 512 characters
 *   expires_at      a valid time in the future, at most 30 days ahead
 */
import { invalidArgument } from "../errors.js";
import {
  AES_BIT_LENGTHS,
  SECRET_TYPES,
  type AesBitLength,
  type KeyAlgorithm,
  type SecretType,
} from "./key-model.js";

export const PROJECT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
export const GRANTEE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
export const NAME_LENGTH_MAX = 255;
export const UUID_PATTERN = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
export const PAGE_SIZE_DEFAULT = 100;
export const PAGE_SIZE_MAX = 1000;
export const PAGE_TOKEN_LENGTH_MAX = 512;
export const GRANT_DURATION_MAX_MS = 30 * 24 * 3600 * 1000;
/**
 * Largest opaque or passphrase payload. Its envelope (33 bytes more) stays within what a replicated
 * record may carry (cluster/replication WRAPPED_MATERIAL_BYTES_MAX, 4096); Nova's vTPM passphrases
 * are 64 characters.
 */
export const SECRET_PAYLOAD_BYTES_MAX = 4000;
export const DECLARED_BIT_LENGTH_MAX = 65536;
export const CONSUMER_FIELD_LENGTH_MAX = 255;
export const CLIENT_REQUEST_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** 9999-12-31T23:59:59.999Z: the last instant protobuf's Timestamp and ISO 8601 years can name. */
export const TIME_MAX_MS = 253402300799999;

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

export function validateName(field: string, value: unknown, lengthMax = NAME_LENGTH_MAX): string {
  const s = requireString(field, value);
  // Bound the work before splitting into code points: a huge string is refused on its length.
  if (s.length > 2 * lengthMax) throw invalidArgument(field, `must be at most ${lengthMax} characters`);
  const chars = [...s];
  if (chars.length === 0) throw invalidArgument(field, "is required");
  if (chars.length > lengthMax) throw invalidArgument(field, `must be at most ${lengthMax} characters`);
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
  if (!(AES_BIT_LENGTHS as readonly unknown[]).includes(value)) {
    throw invalidArgument("bit_length", "must be 128, 192, 256 or 512 for AES");
  }
  return value as AesBitLength;
}

/** Absent means symmetric. */
export function validateSecretType(value: unknown): SecretType {
  if (value === undefined) return "symmetric";
  if (!(SECRET_TYPES as readonly unknown[]).includes(value)) {
    throw invalidArgument("secret_type", "must be symmetric, opaque or passphrase");
  }
  return value as SecretType;
}

/** Symmetric keys are AES; opaque and passphrase secrets may declare AES or nothing (""). */
export function validateAlgorithmFor(secretType: SecretType, value: unknown): KeyAlgorithm | "" {
  if (secretType !== "symmetric" && (value === "" || value === undefined)) return "";
  if (value !== "AES") {
    throw invalidArgument(
      "algorithm",
      secretType === "symmetric" ? "must be AES" : `must be AES or unspecified for ${secretType} secrets`,
    );
  }
  return "AES";
}

export function validateMaterial(value: unknown, secretType: SecretType = "symmetric"): Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalidArgument("material", "must be bytes");
  if (secretType === "symmetric") {
    if (!(AES_BIT_LENGTHS as readonly number[]).includes(value.length * 8)) {
      throw invalidArgument("material", `must be 16, 24, 32 or 64 bytes for AES, got ${value.length}`);
    }
  } else if (value.length === 0 || value.length > SECRET_PAYLOAD_BYTES_MAX) {
    throw invalidArgument(
      "material",
      `must be 1..${SECRET_PAYLOAD_BYTES_MAX} bytes for ${secretType} secrets, got ${value.length}`,
    );
  }
  return value;
}

/** The bit length an import records: the material's for symmetric keys, the declared one otherwise. */
export function validateImportBitLength(
  secretType: SecretType,
  material: Uint8Array,
  value: unknown,
): number {
  const declared = value === undefined ? 0 : value;
  if (typeof declared !== "number" || !Number.isInteger(declared) || declared < 0) {
    throw invalidArgument("bit_length", "must be a non-negative integer");
  }
  if (secretType === "symmetric") {
    if (declared !== 0 && declared !== material.length * 8) {
      throw invalidArgument("bit_length", `must be 0 or ${material.length * 8} (the material's length)`);
    }
    return material.length * 8;
  }
  if (declared > DECLARED_BIT_LENGTH_MAX) {
    throw invalidArgument("bit_length", `must be at most ${DECLARED_BIT_LENGTH_MAX}`);
  }
  return declared;
}

/** A key's expiration: absent (never), or an instant after `now` and no later than TIME_MAX_MS. */
export function validateKeyExpiresAt(value: unknown, now: Date): Date | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
    throw invalidArgument("expires_at", "must be a valid time");
  }
  if (value.getTime() <= now.getTime()) throw invalidArgument("expires_at", "must be in the future");
  if (value.getTime() > TIME_MAX_MS) throw invalidArgument("expires_at", "must be no later than year 9999");
  return new Date(value.getTime());
}

/** "" or absent: none. */
export function validateClientRequestId(value: unknown): string | undefined {
  if (value === undefined || value === "") return undefined;
  const s = requireString("client_request_id", value);
  if (!CLIENT_REQUEST_ID_PATTERN.test(s)) {
    throw invalidArgument(
      "client_request_id",
      "must be 1..128 characters of A-Z a-z 0-9 . _ : - starting with a letter or digit",
    );
  }
  return s;
}

/** A consumer's service, resource type or resource id. */
export function validateConsumerField(
  field: "service" | "resource_type" | "resource_id",
  value: unknown,
): string {
  return validateName(field, value, CONSUMER_FIELD_LENGTH_MAX);
}

export function validateForce(value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== "boolean") throw invalidArgument("force", "must be a boolean");
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
