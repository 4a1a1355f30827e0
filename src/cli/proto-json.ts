/**
 * The CLI's JSON is the API's proto3 JSON mapping: enum values by their full
 * proto names (KEY_ALGORITHM_AES, not AES), 64-bit integers as decimal
 * strings and 32-bit ones as numbers (the client already keeps them so),
 * timestamps as RFC 3339 strings, field names in lowerCamelCase. The client
 * library strips enum prefixes for its callers; these put them back.
 */
import type { AuditEvent, FetchedKey, KeyMetadata } from "../client/index.js";

const prefixed = (prefix: string, value: string): string =>
  value.startsWith(prefix) ? value : `${prefix}${value}`;

/** A KeyMetadata message as proto3 JSON. */
export function keyJson(k: KeyMetadata): Record<string, unknown> {
  return {
    ...k,
    secretType: prefixed("SECRET_TYPE_", k.secretType),
    algorithm: prefixed("KEY_ALGORITHM_", k.algorithm),
    state: prefixed("KEY_STATE_", k.state),
  };
}

/** An AuditEvent message as proto3 JSON. */
export function auditEventJson(e: AuditEvent): Record<string, unknown> {
  return { ...e, outcome: prefixed("AUDIT_OUTCOME_", e.outcome) };
}

/** `key get --json`: the key's metadata and its material in the chosen encoding. */
export function fetchedKeyJson(f: FetchedKey, material: string, format: string): Record<string, unknown> {
  return { key: keyJson(f.key), material, format };
}
