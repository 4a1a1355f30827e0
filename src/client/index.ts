/** The lockbox client library: what storage nodes and the CLI import. */
export {
  LockboxClient,
  collectPages,
  type CallOptions,
  type ConsumerInput,
  type CreateCallOptions,
  type CreateGrantInput,
  type CreateKeyInput,
  type DeleteKeyOptions,
  type GetKeyOptions,
  type ImportKeyInput,
  type ListAuditEventsInput,
  type ListKeysInput,
  type LockboxClientOptions,
} from "./lockbox-client.js";
export { LockboxClientError, isLockboxClientError, statusName, type StatusCodeName } from "./client-error.js";
export { KeyCache, type KeyCacheOptions } from "./key-cache.js";
export type {
  AttestationStatus,
  AuditEvent,
  Consumer,
  FetchedKey,
  KeyConsumers,
  Grant,
  KeyMetadata,
  Page,
  PeerStatus,
  PurgeStatus,
} from "./plain-types.js";
export { loadClientTls, TlsMaterialError, type ClientTlsSource, type PemSource } from "./tls-material.js";
