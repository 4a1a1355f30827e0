/**
 * Conversions between the wire shapes proto-loader hands us (snake_case,
 * enums as names, int64 as strings) and the key service's model. Anything a
 * client could get wrong is INVALID_ARGUMENT naming the proto field; the key
 * service's own validators (src/keys/validation.ts) then check the values.
 */
import { invalidArgument } from "../errors.js";
import type { Timestamp, Timestamp__Output } from "../gen/google/protobuf/Timestamp.js";
import type { Consumer as WireConsumer } from "../gen/lockbox/v1/Consumer.js";
import type { Grant as WireGrant } from "../gen/lockbox/v1/Grant.js";
import type { KeyMetadata as WireKeyMetadata } from "../gen/lockbox/v1/KeyMetadata.js";
import type { Consumer, Grant, KeyAlgorithm, KeyMeta, KeyState, SecretType } from "../keys/key-model.js";

const ALGORITHMS_FROM_WIRE: Record<string, KeyAlgorithm> = { KEY_ALGORITHM_AES: "AES" };
const ALGORITHMS_TO_WIRE: Record<KeyAlgorithm | "", string> = {
  AES: "KEY_ALGORITHM_AES",
  "": "KEY_ALGORITHM_UNSPECIFIED",
};
const SECRET_TYPES_FROM_WIRE: Record<string, SecretType> = {
  SECRET_TYPE_SYMMETRIC: "symmetric",
  SECRET_TYPE_OPAQUE: "opaque",
  SECRET_TYPE_PASSPHRASE: "passphrase",
};
const SECRET_TYPES_TO_WIRE: Record<SecretType, string> = {
  symmetric: "SECRET_TYPE_SYMMETRIC",
  opaque: "SECRET_TYPE_OPAQUE",
  passphrase: "SECRET_TYPE_PASSPHRASE",
};
const STATES_TO_WIRE: Record<KeyState, string> = {
  active: "KEY_STATE_ACTIVE",
  deactivated: "KEY_STATE_DEACTIVATED",
  destroyed: "KEY_STATE_DESTROYED",
};

/** proto-loader gives a known enum value as its name and an unknown one as its number. */
export function algorithmFromWire(value: unknown): KeyAlgorithm {
  if (typeof value === "string" && Object.hasOwn(ALGORITHMS_FROM_WIRE, value))
    return ALGORITHMS_FROM_WIRE[value]!;
  if (value === "KEY_ALGORITHM_UNSPECIFIED" || value === 0 || value === undefined) {
    throw invalidArgument("algorithm", "is required (KEY_ALGORITHM_AES)");
  }
  throw invalidArgument("algorithm", `unknown value ${safeScalar(value)}; expected KEY_ALGORITHM_AES`);
}

/** ImportKey's algorithm: unspecified is "" (allowed for opaque and passphrase secrets). */
export function optionalAlgorithmFromWire(value: unknown): KeyAlgorithm | "" {
  if (value === "KEY_ALGORITHM_UNSPECIFIED" || value === 0 || value === undefined) return "";
  return algorithmFromWire(value);
}

/** Unspecified means symmetric. */
export function secretTypeFromWire(value: unknown): SecretType {
  if (value === "SECRET_TYPE_UNSPECIFIED" || value === 0 || value === undefined) return "symmetric";
  if (typeof value === "string" && Object.hasOwn(SECRET_TYPES_FROM_WIRE, value))
    return SECRET_TYPES_FROM_WIRE[value]!;
  throw invalidArgument(
    "secret_type",
    `unknown value ${safeScalar(value)}; expected SECRET_TYPE_SYMMETRIC, _OPAQUE or _PASSPHRASE`,
  );
}

export function boolFromWire(field: string, value: unknown): boolean {
  if (typeof value !== "boolean") throw invalidArgument(field, "must be a boolean");
  return value;
}

export function uint32FromWire(field: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw invalidArgument(field, "must be an unsigned 32-bit integer");
  }
  return value;
}

export function stringFromWire(field: string, value: unknown): string {
  if (typeof value !== "string") throw invalidArgument(field, "must be a string");
  return value;
}

export function bytesFromWire(field: string, value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalidArgument(field, "must be bytes");
  return value;
}

/** A JS Date holds instants up to 8.64e15 ms either side of the epoch. */
const DATE_SECONDS_MAX = 8.64e15 / 1000;

export function timestampFromWire(field: string, value: Timestamp__Output | null | undefined): Date {
  if (value === null || value === undefined) throw invalidArgument(field, "is required");
  const seconds = typeof value.seconds === "string" ? Number(value.seconds) : NaN;
  const nanos = value.nanos;
  if (!Number.isSafeInteger(seconds) || Math.abs(seconds) > DATE_SECONDS_MAX) {
    throw invalidArgument(field, "seconds is out of range");
  }
  if (typeof nanos !== "number" || !Number.isInteger(nanos) || nanos < 0 || nanos > 999_999_999) {
    throw invalidArgument(field, "nanos must be in 0..999999999");
  }
  const date = new Date(seconds * 1000 + Math.floor(nanos / 1e6));
  if (Number.isNaN(date.getTime())) throw invalidArgument(field, "is out of range");
  return date;
}

/** An optional timestamp: unset is undefined. */
export function optionalTimestampFromWire(
  field: string,
  value: Timestamp__Output | null | undefined,
): Date | undefined {
  return value === null || value === undefined ? undefined : timestampFromWire(field, value);
}

export function timestampToWire(date: Date): Timestamp {
  const ms = date.getTime();
  const seconds = Math.floor(ms / 1000);
  // A number, not a string: protobufjs turns an int64 string into a Long by parsing it digit by
  // digit on every response (1-2% of a peer's CPU per CreateKey); a safe integer converts directly.
  return { seconds, nanos: (ms - seconds * 1000) * 1e6 };
}

export function keyMetaToWire(meta: KeyMeta): WireKeyMetadata {
  return {
    id: meta.id,
    project: meta.project,
    scope: meta.scope,
    name: meta.name,
    algorithm: ALGORITHMS_TO_WIRE[meta.algorithm] as WireKeyMetadata["algorithm"],
    bit_length: meta.bitLength,
    created_at: timestampToWire(meta.createdAt),
    state: STATES_TO_WIRE[meta.state] as WireKeyMetadata["state"],
    parent_id: meta.parentId,
    destroyed_at: meta.destroyedAt === undefined ? null : timestampToWire(meta.destroyedAt),
    secret_type: SECRET_TYPES_TO_WIRE[meta.secretType] as WireKeyMetadata["secret_type"],
    updated_at: timestampToWire(meta.updatedAt),
    expires_at: meta.expiresAt === undefined ? null : timestampToWire(meta.expiresAt),
  };
}

export function consumerToWire(c: Consumer): WireConsumer {
  return {
    service: c.service,
    resource_type: c.resourceType,
    resource_id: c.resourceId,
    created_at: timestampToWire(c.createdAt),
  };
}

export function grantToWire(grant: Grant): WireGrant {
  return {
    id: grant.id,
    key_id: grant.keyId,
    grantee: grant.grantee,
    granted_by: grant.grantedBy,
    created_at: timestampToWire(grant.createdAt),
    expires_at: timestampToWire(grant.expiresAt),
    revoked_at: grant.revokedAt === undefined ? null : timestampToWire(grant.revokedAt),
  };
}

/** A bounded, printable rendering of a client-supplied scalar for an error message. */
function safeScalar(value: unknown): string {
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return JSON.stringify(value.slice(0, 40));
  return `of type ${typeof value}`;
}
