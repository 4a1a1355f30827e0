/**
 * LockboxClient: the typed way for storage nodes and the CLI to call a
 * lockbox. One mTLS channel per endpoint; a call that meets UNAVAILABLE (or,
 * for calls that are safe to repeat, DEADLINE_EXCEEDED) goes to the next
 * endpoint, a bounded number of times, with exponential backoff once every
 * endpoint has been tried. TLS follows src/net/tls-policy.ts (TLS 1.3, or
 * 1.2 with ECDHE and AEAD only). Every attempt has its own deadline. Fetched keys
 * are kept in a bounded TTL cache (key-cache.ts).
 */
import * as grpc from "@grpc/grpc-js";
import type { MethodDefinition } from "@grpc/proto-loader";
import { randomUUID } from "node:crypto";
import { createSecureContext } from "node:tls";

import { TLS_CIPHERS, TLS_ECDH_CURVES, TLS_MIN_VERSION } from "../net/tls-policy.js";

import type { AddConsumerResponse__Output } from "../gen/lockbox/v1/AddConsumerResponse.js";
import type { AdminServiceDefinition } from "../gen/lockbox/v1/AdminService.js";
import type { ListConsumersResponse__Output } from "../gen/lockbox/v1/ListConsumersResponse.js";
import type { RemoveConsumerResponse__Output } from "../gen/lockbox/v1/RemoveConsumerResponse.js";
import type { KeyServiceDefinition } from "../gen/lockbox/v1/KeyService.js";
import type { GetKeyResponse__Output } from "../gen/lockbox/v1/GetKeyResponse.js";
import type { CloneKeyResponse__Output } from "../gen/lockbox/v1/CloneKeyResponse.js";
import type { CreateGrantResponse__Output } from "../gen/lockbox/v1/CreateGrantResponse.js";
import type { CreateKeyResponse__Output } from "../gen/lockbox/v1/CreateKeyResponse.js";
import type { DeleteKeyResponse__Output } from "../gen/lockbox/v1/DeleteKeyResponse.js";
import type { GetKeyMetadataResponse__Output } from "../gen/lockbox/v1/GetKeyMetadataResponse.js";
import type { GetStatusResponse__Output } from "../gen/lockbox/v1/GetStatusResponse.js";
import type { ImportKeyResponse__Output } from "../gen/lockbox/v1/ImportKeyResponse.js";
import type { ListAuditEventsResponse__Output } from "../gen/lockbox/v1/ListAuditEventsResponse.js";
import type { ListKeysResponse__Output } from "../gen/lockbox/v1/ListKeysResponse.js";
import type { RekeyCloneResponse__Output } from "../gen/lockbox/v1/RekeyCloneResponse.js";
import type { RevokeGrantResponse__Output } from "../gen/lockbox/v1/RevokeGrantResponse.js";
import { LockboxClientError, fromServiceError, type StatusCodeName } from "./client-error.js";
import { CallBatcher } from "./call-batcher.js";
import { KeyCache } from "./key-cache.js";
import { describeHostPort, isHostPort } from "../net/host-port.js";
import {
  fromDate,
  toAuditEvent,
  toConsumer,
  toGrant,
  toKeyMetadata,
  toPeerStatus,
  type AuditEvent,
  type Consumer,
  type FetchedKey,
  type KeyConsumers,
  type Grant,
  type KeyMetadata,
  type Page,
  type PeerStatus,
} from "./plain-types.js";
import { lockboxProtos } from "./proto-definitions.js";
import { loadClientTls, type ClientTlsSource } from "./tls-material.js";

export interface LockboxClientOptions {
  /** "host:port" of each peer; tried in order, starting with the first. */
  endpoints: string[];
  tls: ClientTlsSource;
  /** Deadline of each attempt. Default 5000. */
  deadlineMs?: number;
  /** Attempts per call over all endpoints. Default max(3, endpoints.length). */
  attemptsMax?: number;
  /** First backoff after a full round over the endpoints; doubles up to backoffMaxMs. */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Key cache bounds; `false` disables caching. Default 1000 entries for 30 s. */
  cache?: { entriesMax: number; ageMaxMs: number } | false;
  /** TLS server name to verify instead of the endpoint's host (e.g. "localhost"). */
  serverName?: string;
  /**
   * Key calls made in the same turn to one endpoint share a message on one KeyService.Batch
   * stream (call-batcher.ts) instead of a unary call each: the same calls, much less CPU on both
   * sides. Peers without Batch get unary calls. Default true; false makes every call unary.
   */
  batching?: boolean;
}

export interface CallOptions {
  /** Overrides the client's per-attempt deadline. */
  deadlineMs?: number;
}

/**
 * Options of the create-like calls (createKey, importKey, cloneKey, rekeyClone). Each logical call
 * carries a client request id (a fresh UUID unless given) that every retry of it reuses, so the
 * peer answers a retry with the key the first attempt made: these calls are retried after
 * DEADLINE_EXCEEDED too, never creating a second key.
 */
export interface CreateCallOptions extends CallOptions {
  /** 1..128 characters of A-Z a-z 0-9 . _ : -. Default: a fresh random UUID per call. */
  clientRequestId?: string;
}

export interface DeleteKeyOptions extends CallOptions {
  /** Delete even if the key has consumers. */
  force?: boolean;
}

export interface GetKeyOptions extends CallOptions {
  /** Ask the peer even if the key is cached (and refresh the cache). */
  bypassCache?: boolean;
}

export interface CreateKeyInput {
  project: string;
  /** Groups a volume with its snapshots and clones; required. */
  scope: string;
  /** Required. */
  name: string;
  /** Only "AES" today. */
  algorithm?: string;
  /** 128, 192, 256 or 512 (512 for XTS). Default 256. */
  bitLength?: number;
  /** Absent: never expires. */
  expiresAt?: Date;
}

export interface ImportKeyInput {
  project: string;
  scope: string;
  name: string;
  /** "symmetric" (default: an AES key of 16, 24, 32 or 64 bytes), "opaque" or "passphrase". */
  secretType?: "symmetric" | "opaque" | "passphrase";
  /** "AES" (default for symmetric keys); "" or "AES" for opaque and passphrase secrets. */
  algorithm?: string;
  /** Opaque and passphrase: the declared bit length (0 = none). Symmetric: follows from the material. */
  bitLength?: number;
  material: Uint8Array;
  expiresAt?: Date;
}

export interface ConsumerInput {
  service: string;
  resourceType: string;
  resourceId: string;
}

export interface ListKeysInput {
  project: string;
  scope?: string;
  pageSize?: number;
  pageToken?: string;
}

export interface ListAuditEventsInput {
  keyId?: string;
  identity?: string;
  pageSize?: number;
  pageToken?: string;
}

export interface CreateGrantInput {
  keyId: string;
  grantee: string;
  expiresAt: Date;
}

/** Pages followed by listAll* before giving up: a guard against a token that never ends. */
const PAGES_MAX = 10_000;

/**
 * UNAVAILABLE means the call did not run, so any call is retried on it; a call that timed out may
 * have run, so DEADLINE_EXCEEDED is retried only for methods the proto declares safe to repeat
 * (`option idempotency_level`, read from the loaded definition: declared once, in the proto).
 */
/** The path prefix of KeyService's methods: the calls a Batch stream carries. */
const KEY_SERVICE_PREFIX = "/lockbox.v1.KeyService/";

const RETRY_ALWAYS: ReadonlySet<StatusCodeName> = new Set(["UNAVAILABLE"]);
const RETRY_IF_IDEMPOTENT: ReadonlySet<StatusCodeName> = new Set(["UNAVAILABLE", "DEADLINE_EXCEEDED"]);

function isIdempotent(method: AnyMethod): boolean {
  const level = (method.options as { idempotency_level?: unknown } | undefined)?.idempotency_level;
  return level === "NO_SIDE_EFFECTS" || level === "IDEMPOTENT";
}

// Both service definitions map method names to MethodDefinitions; #call only needs path and codecs.
type AnyMethod = MethodDefinition<object, object, object, object>;

/** The AdminService cluster methods adminCall() reaches. */
export type AdminCallMethod =
  | "EnrollPeer"
  | "ListPeers"
  | "RemovePeer"
  | "DrainPeer"
  | "AddPeerUnattested"
  | "PutPolicy"
  | "ListPolicies"
  | "RemovePolicy"
  | "IssueIdentity"
  | "ListIdentities"
  | "RevokeIdentity"
  | "RotateMasterKey"
  | "GetMasterKeyStatus"
  | "GetRing";

export class LockboxClient {
  readonly endpoints: readonly string[];
  readonly #channels: grpc.Client[];
  readonly #keyService: KeyServiceDefinition;
  readonly #adminService: AdminServiceDefinition;
  readonly #deadlineMs: number;
  readonly #attemptsMax: number;
  readonly #backoffInitialMs: number;
  readonly #backoffMaxMs: number;
  readonly #cache: KeyCache<FetchedKey["key"]> | undefined;
  /** Per endpoint, the KeyService.Batch stream its key calls share; undefined without batching. */
  readonly #batchers: (CallBatcher | undefined)[];
  /** Index of the endpoint that answered last; calls start there. */
  #preferred = 0;
  #closed = false;

  constructor(options: LockboxClientOptions) {
    if (options.endpoints.length === 0) throw new RangeError("endpoints: at least one is required");
    for (const e of options.endpoints) {
      if (!isHostPort(e)) throw new RangeError(`endpoints: '${e}' is not ${describeHostPort()}`);
    }
    this.endpoints = [...options.endpoints];
    this.#deadlineMs = positive("deadlineMs", options.deadlineMs ?? 5000);
    this.#attemptsMax = positive("attemptsMax", options.attemptsMax ?? Math.max(3, this.endpoints.length));
    this.#backoffInitialMs = positive("backoffInitialMs", options.backoffInitialMs ?? 100);
    this.#backoffMaxMs = positive("backoffMaxMs", options.backoffMaxMs ?? 2000);
    this.#cache =
      options.cache === false
        ? undefined
        : new KeyCache(options.cache ?? { entriesMax: 1000, ageMaxMs: 30_000 });

    const tls = loadClientTls(options.tls);
    const credentials = grpc.credentials.createFromSecureContext(
      createSecureContext({
        ca: tls.ca,
        key: tls.key,
        cert: tls.cert,
        minVersion: TLS_MIN_VERSION,
        ciphers: TLS_CIPHERS,
        ecdhCurve: TLS_ECDH_CURVES,
      }),
    );
    const channelOptions: grpc.ChannelOptions = {};
    if (options.serverName !== undefined) {
      channelOptions["grpc.ssl_target_name_override"] = options.serverName;
      channelOptions["grpc.default_authority"] = options.serverName;
    }
    this.#channels = this.endpoints.map((e) => new grpc.Client(e, credentials, channelOptions));
    const protos = lockboxProtos();
    this.#keyService = protos.keys.lockbox.v1.KeyService.service;
    this.#adminService = protos.admin.lockbox.v1.AdminService.service;
    const batch = this.#keyService.Batch as unknown as AnyMethod;
    this.#batchers = this.#channels.map((channel, i) =>
      options.batching === false ? undefined : new CallBatcher(channel, batch, this.endpoints[i]!),
    );
  }

  // ---- KeyService -------------------------------------------------------

  async createKey(input: CreateKeyInput, opts: CreateCallOptions = {}): Promise<KeyMetadata> {
    const res = await this.#call<CreateKeyResponse__Output>(
      this.#keyService.CreateKey,
      opts,
      {
        project: input.project,
        scope: input.scope,
        name: input.name,
        algorithm: wireAlgorithm(input.algorithm),
        bit_length: input.bitLength ?? 256,
        expires_at: input.expiresAt === undefined ? null : fromDate(input.expiresAt),
        client_request_id: clientRequestIdOf(opts),
      },
      true,
    );
    return toKeyMetadata(res.key);
  }

  async importKey(input: ImportKeyInput, opts: CreateCallOptions = {}): Promise<KeyMetadata> {
    const secretType = input.secretType ?? "symmetric";
    const algorithm =
      input.algorithm === undefined
        ? secretType === "symmetric"
          ? wireAlgorithm("AES")
          : "KEY_ALGORITHM_UNSPECIFIED"
        : input.algorithm === ""
          ? "KEY_ALGORITHM_UNSPECIFIED"
          : wireAlgorithm(input.algorithm);
    const res = await this.#call<ImportKeyResponse__Output>(
      this.#keyService.ImportKey,
      opts,
      {
        project: input.project,
        scope: input.scope,
        name: input.name,
        secret_type: `SECRET_TYPE_${secretType.toUpperCase()}`,
        algorithm,
        bit_length: input.bitLength ?? 0,
        material: Buffer.from(input.material),
        expires_at: input.expiresAt === undefined ? null : fromDate(input.expiresAt),
        client_request_id: clientRequestIdOf(opts),
      },
      true,
    );
    return toKeyMetadata(res.key);
  }

  /** Material and metadata; served from the cache while fresh unless `bypassCache`. */
  async getKey(id: string, opts: GetKeyOptions = {}): Promise<FetchedKey> {
    if (this.#cache !== undefined && opts.bypassCache !== true) {
      const hit = this.#cache.get(id);
      if (hit !== undefined) return { key: structuredClone(hit.meta), material: hit.material };
    }
    const res = await this.#call<GetKeyResponse__Output>(this.#keyService.GetKey, opts, { id });
    const key = toKeyMetadata(res.key);
    const material = Buffer.from(res.material);
    res.material.fill(0);
    this.#cache?.set(id, material, key);
    return { key, material };
  }

  async getKeyMetadata(id: string, opts: CallOptions = {}): Promise<KeyMetadata> {
    const res = await this.#call<GetKeyMetadataResponse__Output>(this.#keyService.GetKeyMetadata, opts, {
      id,
    });
    return toKeyMetadata(res.key);
  }

  async listKeys(input: ListKeysInput, opts: CallOptions = {}): Promise<Page<KeyMetadata>> {
    const res = await this.#call<ListKeysResponse__Output>(this.#keyService.ListKeys, opts, {
      project: input.project,
      scope: input.scope ?? "",
      page_size: input.pageSize ?? 0,
      page_token: input.pageToken ?? "",
    });
    return { items: res.keys.map(toKeyMetadata), nextPageToken: res.next_page_token };
  }

  /** Every key of a project (or scope), following page tokens. */
  async listAllKeys(input: Omit<ListKeysInput, "pageToken">, opts: CallOptions = {}): Promise<KeyMetadata[]> {
    return collectPages((pageToken) => this.listKeys({ ...input, pageToken }, opts));
  }

  /**
   * Destroys the key on the peer and drops it from this client's cache. A key with consumers is
   * FAILED_PRECONDITION unless `force`.
   */
  async deleteKey(id: string, opts: DeleteKeyOptions = {}): Promise<KeyMetadata> {
    this.#cache?.delete(id);
    const res = await this.#call<DeleteKeyResponse__Output>(this.#keyService.DeleteKey, opts, {
      id,
      force: opts.force === true,
    });
    this.#cache?.delete(id);
    return toKeyMetadata(res.key);
  }

  async cloneKey(id: string, name = "", opts: CreateCallOptions = {}): Promise<KeyMetadata> {
    const res = await this.#call<CloneKeyResponse__Output>(
      this.#keyService.CloneKey,
      opts,
      { id, name, client_request_id: clientRequestIdOf(opts) },
      true,
    );
    return toKeyMetadata(res.key);
  }

  async rekeyClone(id: string, name = "", opts: CreateCallOptions = {}): Promise<KeyMetadata> {
    const res = await this.#call<RekeyCloneResponse__Output>(
      this.#keyService.RekeyClone,
      opts,
      { id, name, client_request_id: clientRequestIdOf(opts) },
      true,
    );
    return toKeyMetadata(res.key);
  }

  /** Records that a resource uses the key; adding one that is there already changes nothing. */
  async addConsumer(keyId: string, consumer: ConsumerInput, opts: CallOptions = {}): Promise<KeyConsumers> {
    const res = await this.#call<AddConsumerResponse__Output>(
      this.#keyService.AddConsumer,
      opts,
      consumerRequest(keyId, consumer),
    );
    return { key: toKeyMetadata(res.key), consumers: res.consumers.map(toConsumer), changed: res.added };
  }

  /** Removes a consumer; `changed` is false when there was no such consumer. */
  async removeConsumer(
    keyId: string,
    consumer: ConsumerInput,
    opts: CallOptions = {},
  ): Promise<KeyConsumers> {
    const res = await this.#call<RemoveConsumerResponse__Output>(
      this.#keyService.RemoveConsumer,
      opts,
      consumerRequest(keyId, consumer),
    );
    return { key: toKeyMetadata(res.key), consumers: res.consumers.map(toConsumer), changed: res.removed };
  }

  async listConsumers(keyId: string, opts: CallOptions = {}): Promise<Consumer[]> {
    const res = await this.#call<ListConsumersResponse__Output>(this.#keyService.ListConsumers, opts, {
      key_id: keyId,
    });
    return res.consumers.map(toConsumer);
  }

  async createGrant(input: CreateGrantInput, opts: CallOptions = {}): Promise<Grant> {
    const res = await this.#call<CreateGrantResponse__Output>(this.#keyService.CreateGrant, opts, {
      key_id: input.keyId,
      grantee: input.grantee,
      expires_at: fromDate(input.expiresAt),
    });
    return toGrant(res.grant);
  }

  async revokeGrant(grantId: string, opts: CallOptions = {}): Promise<Grant> {
    const res = await this.#call<RevokeGrantResponse__Output>(this.#keyService.RevokeGrant, opts, {
      grant_id: grantId,
    });
    return toGrant(res.grant);
  }

  // ---- AdminService -----------------------------------------------------

  async getStatus(opts: CallOptions = {}): Promise<PeerStatus> {
    return toPeerStatus(await this.#call<GetStatusResponse__Output>(this.#adminService.GetStatus, opts, {}));
  }

  async listAuditEvents(input: ListAuditEventsInput = {}, opts: CallOptions = {}): Promise<Page<AuditEvent>> {
    const res = await this.#call<ListAuditEventsResponse__Output>(this.#adminService.ListAuditEvents, opts, {
      key_id: input.keyId ?? "",
      identity: input.identity ?? "",
      page_size: input.pageSize ?? 0,
      page_token: input.pageToken ?? "",
    });
    return { items: res.events.map(toAuditEvent), nextPageToken: res.next_page_token };
  }

  // ---- lifecycle --------------------------------------------------------

  /** Number of keys currently cached (for tests and diagnostics; never their contents). */
  get cachedKeyCount(): number {
    return this.#cache?.size ?? 0;
  }

  /** Zeroes and drops every cached key. */
  clearCache(): void {
    this.#cache?.clear();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#cache?.clear();
    for (const b of this.#batchers) b?.close();
    for (const c of this.#channels) c.close();
  }

  /**
   * An AdminService cluster call (peers, PCR policies, identities: admin.proto) by method name, with the
   * wire request and the wire response (proto field names). The CLI's peer, policy and identity commands
   * use it; retries follow the method's declared idempotency, as for every call.
   */
  async adminCall<R = Record<string, unknown>>(
    method: AdminCallMethod,
    request: object,
    opts: CallOptions = {},
  ): Promise<R> {
    const m = (this.#adminService as unknown as Record<string, object | undefined>)[method];
    if (m === undefined) throw new LockboxClientError("INVALID_ARGUMENT", `no AdminService method ${method}`);
    return this.#call<R>(m, opts, request);
  }

  toJSON(): { endpoints: readonly string[] } {
    return { endpoints: this.endpoints };
  }

  // ---- the one place calls go out ---------------------------------------

  /**
   * `deduplicated`: the request carries a client request id (the same on every attempt), which
   * makes a non-idempotent method safe to repeat after a timeout.
   */
  async #call<R>(method: object, opts: CallOptions, request: object, deduplicated = false): Promise<R> {
    if (this.#closed) throw new LockboxClientError("CANCELLED", "client is closed");
    const m = method as AnyMethod;
    const retryable = deduplicated || isIdempotent(m) ? RETRY_IF_IDEMPOTENT : RETRY_ALWAYS;
    const deadlineMs = positive("deadlineMs", opts.deadlineMs ?? this.#deadlineMs);
    const n = this.#channels.length;
    let serialized: Buffer;
    try {
      serialized = m.requestSerialize(request);
    } catch (err) {
      // protobufjs rejects a value of the wrong type before anything is sent.
      throw new LockboxClientError("INVALID_ARGUMENT", `request: ${(err as Error).message}`);
    }
    let last: LockboxClientError | undefined;
    for (let attempt = 0; attempt < this.#attemptsMax; attempt++) {
      // Back off only when about to revisit an endpoint already tried in this call.
      if (attempt >= n) {
        const round = Math.floor(attempt / n);
        await sleep(Math.min(this.#backoffMaxMs, this.#backoffInitialMs * 2 ** (round - 1)));
      }
      const index = (this.#preferred + attempt) % n;
      try {
        const res = await this.#attempt<R>(index, m, serialized, deadlineMs);
        this.#preferred = index;
        return res;
      } catch (err) {
        if (!(err instanceof LockboxClientError)) throw err;
        last = err;
        if (!retryable.has(err.code)) throw err;
      }
    }
    if (last === undefined) throw new Error("LockboxClient invariant: no attempt was made");
    throw last;
  }

  /** One attempt at endpoint `index`: batched when its peer has Batch, else unary. */
  async #attempt<R>(index: number, m: AnyMethod, serialized: Buffer, deadlineMs: number): Promise<R> {
    const batcher = this.#batchers[index];
    if (batcher === undefined || batcher.unsupported || !m.path.startsWith(KEY_SERVICE_PREFIX)) {
      return this.#unary<R>(index, m, serialized, deadlineMs);
    }
    let response: Buffer;
    try {
      response = await batcher.call(m.path.slice(KEY_SERVICE_PREFIX.length), serialized, deadlineMs);
    } catch (err) {
      // The peer has no Batch (an older version): this call, and the next ones, go unary.
      if (err instanceof LockboxClientError && err.code === "UNIMPLEMENTED" && batcher.unsupported)
        return this.#unary<R>(index, m, serialized, deadlineMs);
      throw err;
    }
    return m.responseDeserialize(response) as R;
  }

  #unary<R>(index: number, m: AnyMethod, serialized: Buffer, deadlineMs: number): Promise<R> {
    const channel = this.#channels[index]!;
    const endpoint = this.endpoints[index]!;
    return new Promise<R>((resolve, reject) => {
      channel.makeUnaryRequest<Buffer, R>(
        m.path,
        (b: Buffer) => b,
        (b: Buffer) => m.responseDeserialize(b) as R,
        serialized,
        new grpc.Metadata(),
        { deadline: Date.now() + deadlineMs },
        (err, res) => {
          if (err !== null) reject(fromServiceError(err, endpoint));
          else if (res === undefined)
            reject(new LockboxClientError("INTERNAL", "empty response", undefined, endpoint));
          else resolve(res);
        },
      );
    });
  }
}

/** The request's client request id: the caller's, or a fresh one for this logical call (all its attempts). */
function clientRequestIdOf(opts: CreateCallOptions): string {
  return opts.clientRequestId ?? randomUUID();
}

function consumerRequest(keyId: string, c: ConsumerInput): object {
  return { key_id: keyId, service: c.service, resource_type: c.resourceType, resource_id: c.resourceId };
}

function wireAlgorithm(algorithm: string | undefined): string {
  const a = (algorithm ?? "AES").toUpperCase();
  return a.startsWith("KEY_ALGORITHM_") ? a : `KEY_ALGORITHM_${a}`;
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0)
    throw new RangeError(`${name} must be a positive number, got ${value}`);
  return value;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Follows next-page tokens, bounded by PAGES_MAX. */
export async function collectPages<T>(fetch: (pageToken: string) => Promise<Page<T>>): Promise<T[]> {
  const all: T[] = [];
  let token = "";
  for (let page = 0; page < PAGES_MAX; page++) {
    const res = await fetch(token);
    all.push(...res.items);
    if (res.nextPageToken === "") return all;
    token = res.nextPageToken;
  }
  throw new LockboxClientError("OUT_OF_RANGE", `more than ${PAGES_MAX} pages`);
}
