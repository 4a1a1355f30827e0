/**
 * Every bound the gRPC edge puts on what a client can make the peer hold
 * (issue 8 item 1). A client without a valid certificate gets a friendly
 * UNAUTHENTICATED at the call's headers and nothing else: its connections
 * are few, short-lived and never read a request body; an authenticated one
 * is bounded per connection and per identity. Defaults fit a storage node's
 * traffic with a wide margin; tests lower them.
 */

export interface EdgeLimits {
  /** Open connections in all (handshaking ones included); beyond, new ones are closed at accept. */
  readonly connectionsMax: number;
  /** Open connections from one remote address. */
  readonly connectionsPerSourceMax: number;
  /** Time a client has to finish the TLS handshake. */
  readonly handshakeTimeoutMs: number;
  /** Connections without a valid client certificate, in all and per remote address. */
  readonly unauthenticatedConnectionsMax: number;
  readonly unauthenticatedConnectionsPerSourceMax: number;
  /** How long a connection without a valid client certificate may stay open. */
  readonly unauthenticatedConnectionLifetimeMs: number;
  /** Calls refused on one unauthenticated connection before it is closed. */
  readonly refusalsPerConnectionMax: number;
  /**
   * Calls without a valid certificate one address may have refused per second; beyond, its
   * connections without a certificate are closed and new ones refused for refusalCooldownMs
   * (before the TLS handshake when it holds no authenticated connection).
   */
  readonly refusalsPerSourcePerSecondMax: number;
  readonly refusalCooldownMs: number;
  /** Connections of one authenticated identity. */
  readonly connectionsPerIdentityMax: number;
  /** A connection with no call for this long is closed (GOAWAY). */
  readonly connectionIdleMs: number;
  /** HTTP/2 streams one connection may have open at once. */
  readonly streamsPerConnectionMax: number;
  /** Largest header list (uncompressed bytes) a call may send; gRPC metadata of lockbox calls is far smaller. */
  readonly headerListBytesMax: number;
  /** HTTP/2 session memory (MB, nghttp2's accounting) before new streams are refused. */
  readonly sessionMemoryMb: number;
  /** Calls of one identity being worked on at once; more are RESOURCE_EXHAUSTED at their headers. */
  readonly callsInFlightPerIdentityMax: number;
}

export const EDGE_LIMITS_DEFAULT: EdgeLimits = {
  connectionsMax: 1024,
  connectionsPerSourceMax: 128,
  handshakeTimeoutMs: 5_000,
  unauthenticatedConnectionsMax: 64,
  unauthenticatedConnectionsPerSourceMax: 4,
  unauthenticatedConnectionLifetimeMs: 10_000,
  refusalsPerConnectionMax: 4096,
  refusalsPerSourcePerSecondMax: 200,
  refusalCooldownMs: 10_000,
  connectionsPerIdentityMax: 32,
  connectionIdleMs: 5 * 60_000,
  streamsPerConnectionMax: 64,
  headerListBytesMax: 8192,
  sessionMemoryMb: 16,
  callsInFlightPerIdentityMax: 64,
};

/**
 * The largest request each lockbox method accepts, in bytes. Every field has
 * a validated maximum (names: 255 characters, ids: 36, page tokens: 512), so
 * these are generous; a bigger request is refused before it is decoded. The
 * largest of them is grpc-js's receive limit, which refuses a message by the
 * length its frame announces, before buffering it.
 */
export const REQUEST_BYTES_MAX_BY_METHOD: Readonly<Record<string, number>> = {
  "/lockbox.v1.KeyService/CreateKey": 4096,
  // Opaque and passphrase payloads are up to 4000 bytes beside names of up to 255 characters.
  "/lockbox.v1.KeyService/ImportKey": 8192,
  "/lockbox.v1.KeyService/GetKey": 1024,
  "/lockbox.v1.KeyService/GetKeyMetadata": 1024,
  "/lockbox.v1.KeyService/ListKeys": 2048,
  "/lockbox.v1.KeyService/DeleteKey": 1024,
  "/lockbox.v1.KeyService/CloneKey": 2048,
  "/lockbox.v1.KeyService/RekeyClone": 2048,
  "/lockbox.v1.KeyService/CreateGrant": 1024,
  "/lockbox.v1.KeyService/RevokeGrant": 1024,
  // Three consumer fields of up to 255 characters (at most 4 bytes each in UTF-8).
  "/lockbox.v1.KeyService/AddConsumer": 4096,
  "/lockbox.v1.KeyService/RemoveConsumer": 4096,
  "/lockbox.v1.KeyService/ListConsumers": 1024,
  // A batch of calls, each also within its own method's limit above (key-call-batch.ts).
  "/lockbox.v1.KeyService/Batch": 64 * 1024,
  "/lockbox.v1.AdminService/GetStatus": 64,
  "/lockbox.v1.AdminService/ListAuditEvents": 2048,
  "/lockbox.v1.AdminService/EnrollPeer": 12288,
  "/lockbox.v1.AdminService/ListPeers": 64,
  "/lockbox.v1.AdminService/RemovePeer": 1024,
  "/lockbox.v1.AdminService/DrainPeer": 256,
  "/lockbox.v1.AdminService/AddPeerUnattested": 8192,
  "/lockbox.v1.AdminService/PutPolicy": 10240,
  "/lockbox.v1.AdminService/ListPolicies": 64,
  "/lockbox.v1.AdminService/RemovePolicy": 256,
  "/lockbox.v1.AdminService/IssueIdentity": 40960,
  "/lockbox.v1.AdminService/ListIdentities": 64,
  "/lockbox.v1.AdminService/RevokeIdentity": 1024,
  // Peer links (src/raft, src/controlplane): raft batches and snapshot chunks are cut to the transport's
  // PEER_MESSAGE_BYTES_MAX; a forwarded control command is at most 16 KiB. Only a member's certificate
  // gets these services to read a message at all.
  "/lockbox.v1.PeerService/Raft": 64 * 1024,
  "/lockbox.v1.PeerService/Snapshot": 64 * 1024,
  "/lockbox.v1.PeerService/Propose": 17 * 1024,
};

/** grpc-js's per-message receive limit: the largest per-method limit (health and reflection requests are smaller). */
export const REQUEST_BYTES_MAX = Math.max(...Object.values(REQUEST_BYTES_MAX_BY_METHOD));

export function edgeLimits(overrides: Partial<EdgeLimits> = {}): EdgeLimits {
  const limits = { ...EDGE_LIMITS_DEFAULT, ...overrides };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1)
      throw new RangeError(`edge limit ${name} must be a positive integer`);
  }
  return limits;
}
