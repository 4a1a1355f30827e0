/**
 * Every bound the Barbican REST listener puts on what a client can make the peer hold (issue 11
 * items 1-3), and the bounds of its Keystone token validation. They are tunables: the config's
 * `restLimits` section may set any of them (src/config/tunables.ts, docs/configuration.md), so a
 * deployment can fit them to its traffic and a test can lower them. Defaults fit a storage node's
 * traffic with a wide margin.
 */
export interface RestLimits {
  /** Open connections in all; beyond, new ones are closed at accept. */
  readonly connectionsMax: number;
  /** Open connections from one remote address. */
  readonly connectionsPerSourceMax: number;
  /** Request line and headers together. */
  readonly headerBytesMax: number;
  /** Time a client has to send the request line and headers. */
  readonly headersTimeoutMs: number;
  /** Time to receive a whole request, body included. */
  readonly requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this long. */
  readonly keepAliveTimeoutMs: number;
  /** Time a client has to finish the TLS handshake. */
  readonly handshakeTimeoutMs: number;
  /** Largest request body, read only once the caller is authenticated (Barbican refuses secrets over about 16 KB with 413 too). */
  readonly bodyBytesMax: number;
  /** Requests one keep-alive connection may carry before it is closed. */
  readonly requestsPerConnectionMax: number;
  /** Calls refused for want of an identity per second from one address before it is cooled down. */
  readonly refusalsPerSourcePerSecondMax: number;
  /** How long that cool-down lasts (new connections from the address are closed at accept). */
  readonly refusalCooldownMs: number;
  /** Validated Keystone tokens cached (by hash); the oldest go first when full. */
  readonly keystoneCacheEntriesMax: number;
  /** How long a token Keystone refused is remembered as refused (no Keystone request per retry). */
  readonly keystoneNegativeCacheMs: number;
  /** Token validations waiting on Keystone at once; more are refused UNAVAILABLE (retryable), never queued. */
  readonly keystoneValidationsInFlightMax: number;
  /** Longest a request to Keystone may take. */
  readonly keystoneRequestTimeoutMs: number;
}

export const REST_LIMITS_DEFAULT: RestLimits = {
  connectionsMax: 512,
  connectionsPerSourceMax: 64,
  headerBytesMax: 16 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  handshakeTimeoutMs: 5_000,
  bodyBytesMax: 20_000,
  requestsPerConnectionMax: 10_000,
  refusalsPerSourcePerSecondMax: 100,
  refusalCooldownMs: 10_000,
  keystoneCacheEntriesMax: 10_000,
  keystoneNegativeCacheMs: 10_000,
  keystoneValidationsInFlightMax: 16,
  keystoneRequestTimeoutMs: 5_000,
};
