/**
 * The part of Barbican's v1 API that Castellan and python-barbicanclient use (issue 11 item 1):
 * version documents, secrets, key orders and consumers, each route an Operation of the shared call
 * pipeline (src/edge/call-pipeline.ts), so REST calls are authenticated, authorized, audited and
 * bounded by the same rules as gRPC calls, under the same operation names where the same key
 * service call runs ("ImportKey", "GetKey", ...).
 *
 * Every route validates all of its input before it changes anything; an id that is malformed,
 * unknown, destroyed, expired or of another project is 404, alike. Bodies are read only after the
 * caller is authenticated, and only up to RestLimits.bodyBytesMax.
 */
import { randomBytes } from "node:crypto";
import type * as http from "node:http";
import type { Operation } from "../edge/call-pipeline.js";
import { LockboxError, invalidArgument, isLockboxError, notFound } from "../errors.js";
import * as model from "../keys/key-model.js";
import { PAGE_SIZE_MAX, UUID_PATTERN } from "../keys/validation.js";
import {
  type ConsumerJson,
  type SecretView,
  UNNAMED_SECRET_NAME,
  contentTypeOf,
  orderJson,
  secretJson,
  versionJson,
} from "./barbican-json.js";
import type { OrderMeta, OrderStore } from "./order-store.js";
import type { RestCaller } from "./rest-auth.js";

/** The key service as the REST API uses it (src/keys/key-service.ts implements it). */
export interface BarbicanKeys {
  createKey(caller: RestCaller, req: model.CreateKeyRequest): Promise<model.KeyMeta>;
  importKey(caller: RestCaller, req: model.ImportKeyRequest): Promise<model.KeyMeta>;
  getKey(caller: RestCaller, req: model.KeyIdRequest): Promise<model.GetKeyResponse>;
  getKeyMetadata(caller: RestCaller, req: model.KeyIdRequest): Promise<model.KeyMeta>;
  listKeys(caller: RestCaller, req: model.ListKeysRequest): Promise<model.ListKeysResponse>;
  deleteKey(caller: RestCaller, req: model.DeleteKeyRequest): Promise<model.KeyMeta>;
  addConsumer(caller: RestCaller, req: model.ConsumerRequest): Promise<model.ConsumersResponse>;
  removeConsumer(caller: RestCaller, req: model.ConsumerRequest): Promise<model.ConsumersResponse>;
  listConsumers(caller: RestCaller, req: model.KeyConsumersRequest): Promise<model.ConsumersResponse>;
}

export interface RestRequest {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: http.IncomingHttpHeaders;
  /** "https://host:port": where secret_ref and order_ref point. */
  readonly base: string;
  /** The body, at most bodyBytesMax (RESOURCE_EXHAUSTED, field "body", beyond). */
  body(): Promise<Buffer>;
}

export interface RestResponse {
  status: number;
  headers?: Record<string, string>;
  json?: unknown;
  bytes?: { contentType: string; data: Buffer };
}

export type RestOperation = Operation<RestRequest, RestResponse, RestCaller>;

export interface Route {
  op: RestOperation;
  readOnly: boolean;
}

/** What a request matched: an operation, a document served to anyone, or a refusal. */
export type Match = { route: Route } | { open: RestResponse } | { refuse: LockboxError; status: 404 | 405 };

/** Most keys a secrets listing reads to filter, sort and count (Barbican lists oldest first with a total). */
export const SECRETS_SCANNED_MAX = 10_000;
const LIST_LIMIT_DEFAULT = 10;
const LIST_LIMIT_MAX = 100;
const OFFSET_MAX = SECRETS_SCANNED_MAX;
/** Largest secret payload, decoded (the key model's own limit is the final word). */
export const PAYLOAD_BYTES_MAX = 10_000;

const SECRET_FIELDS = new Set([
  "name",
  "expiration",
  "algorithm",
  "bit_length",
  "mode",
  "payload",
  "payload_content_type",
  "payload_content_encoding",
  "secret_type",
]);
const ORDER_FIELDS = new Set(["type", "meta"]);
const ORDER_META_FIELDS = new Set([
  "name",
  "algorithm",
  "bit_length",
  "mode",
  "expiration",
  "payload_content_type",
]);
const MODES = new Set(["cbc", "xts", "gcm", "ctr", "ecb"]);

export class BarbicanApi {
  constructor(
    private readonly keys: BarbicanKeys,
    private readonly orders: OrderStore,
    private readonly clock: { now(): Date },
  ) {}

  match(method: string, path: string, base: string): Match {
    const parts = path.split("/").filter((p, i, all) => p !== "" || i === all.length - 1);
    // "/v1/secrets/" and "/v1/secrets" are the same collection; a trailing slash is dropped.
    while (parts.length > 0 && parts[parts.length - 1] === "") parts.pop();
    const [v, collection, id, sub, extra] = parts;
    if (parts.length === 0) return this.only(method, ["GET"], () => ({ open: versions(base, 300) }));
    if (v !== "v1") return notFoundMatch();
    if (parts.length === 1) return this.only(method, ["GET"], () => ({ open: versions(base, 200) }));
    if (extra !== undefined) return notFoundMatch();
    if (collection === "secrets") {
      if (id === undefined) {
        return this.only(method, ["GET", "POST"], () =>
          method === "GET" ? route(this.listSecrets, true) : route(this.storeSecret, false),
        );
      }
      if (sub === undefined) {
        return this.only(method, ["GET", "DELETE"], () =>
          method === "GET"
            ? route(this.withId(id, this.getSecret), true)
            : route(this.withId(id, this.deleteSecret), false),
        );
      }
      if (sub === "payload")
        return this.only(method, ["GET"], () => route(this.withId(id, this.getPayload), true));
      if (sub === "consumers") {
        return this.only(method, ["GET", "POST", "DELETE"], () =>
          method === "GET"
            ? route(this.withId(id, this.listConsumers), true)
            : route(this.withId(id, method === "POST" ? this.addConsumer : this.removeConsumer), false),
        );
      }
      return notFoundMatch();
    }
    if (collection === "orders") {
      if (sub !== undefined) return notFoundMatch();
      if (id === undefined) {
        return this.only(method, ["GET", "POST"], () =>
          method === "GET" ? route(this.listOrders, true) : route(this.createOrder, false),
        );
      }
      return this.only(method, ["GET", "DELETE"], () =>
        method === "GET"
          ? route(this.withId(id, this.getOrder), true)
          : route(this.withId(id, this.deleteOrder), false),
      );
    }
    return notFoundMatch();
  }

  private only(method: string, allowed: string[], then: () => Match): Match {
    if (allowed.includes(method)) return then();
    return {
      refuse: new LockboxError("INVALID_ARGUMENT", `method ${method} is not allowed here`),
      status: 405,
    };
  }

  /** Binds the path's id: a malformed one is NOT_FOUND (like Barbican), found in run() so it is audited. */
  private withId(raw: string, op: (id: string) => RestOperation): RestOperation {
    let decoded = raw;
    try {
      decoded = decodeURIComponent(raw);
    } catch {
      // left as sent; it is no UUID, so the call is NOT_FOUND
    }
    const id = UUID_PATTERN.test(decoded) ? decoded.toLowerCase() : undefined;
    const bound = op(id ?? decoded);
    if (id !== undefined) return bound;
    return {
      ...bound,
      run: async () =>
        Promise.reject(notFound(`${bound.name.includes("Order") ? "order" : "secret"} ${clip(decoded)}`)),
    };
  }

  // ---- secrets ----

  private readonly storeSecret: RestOperation = {
    name: "ImportKey",
    adminOnly: false,
    requestFacts: () => ({}),
    run: async (caller, req) => {
      requireJson(req);
      const body = asObject(parseJson(await req.body()), "body");
      refuseUnknown(body, SECRET_FIELDS, "");
      const name = optionalString(body, "name") ?? UNNAMED_SECRET_NAME;
      const secretType = optionalString(body, "secret_type") ?? "opaque";
      const algorithm = optionalString(body, "algorithm");
      const bitLength = optionalInteger(body, "bit_length");
      checkMode(optionalString(body, "mode"));
      const expiresAt = optionalTime(body, "expiration", this.clock.now());
      const payload = body.payload;
      if (payload === undefined || payload === null || payload === "")
        throw invalidArgument("payload", "is required (lockbox stores no secret without its payload)");
      if (!isSecretType(secretType))
        throw invalidArgument("secret_type", "must be symmetric, opaque or passphrase");
      if (algorithm !== undefined && algorithm.toUpperCase() !== "AES")
        throw invalidArgument("algorithm", "must be aes (or absent for opaque and passphrase secrets)");
      if (secretType === "symmetric" && algorithm === undefined)
        throw invalidArgument("algorithm", "is required for a symmetric key (aes)");
      const material = decodePayload(body);
      try {
        if (secretType === "symmetric" && bitLength !== undefined && bitLength !== material.length * 8)
          throw invalidArgument("bit_length", `must match the payload (${material.length * 8} bits)`);
        const meta = await this.keys.importKey(caller, {
          project: caller.project,
          scope: newScope(),
          name,
          secretType,
          algorithm: algorithm === undefined ? "" : "AES",
          ...(bitLength !== undefined ? { bitLength } : {}),
          material,
          ...(expiresAt !== undefined ? { expiresAt } : {}),
        });
        const ref = `${req.base}/v1/secrets/${meta.id}`;
        return {
          response: { status: 201, headers: { Location: ref }, json: { secret_ref: ref } },
          facts: facts(meta),
        };
      } finally {
        material.fill(0);
      }
    },
  };

  private readonly listSecrets: RestOperation = {
    name: "ListKeys",
    adminOnly: false,
    requestFacts: () => ({}),
    run: async (caller, req) => {
      const q = req.query;
      const limit = queryInteger(q, "limit", LIST_LIMIT_DEFAULT, 0, LIST_LIMIT_MAX);
      const offset = queryInteger(q, "offset", 0, 0, OFFSET_MAX);
      const name = q.get("name");
      const alg = q.get("alg");
      const bits = q.has("bits") ? queryInteger(q, "bits", 0, 0, 65536) : undefined;
      const secretType = q.get("secret_type");
      const all = (await this.liveKeys(caller)).filter(
        (k) =>
          (name === null || k.name === name) &&
          (alg === null || k.algorithm.toLowerCase() === alg.toLowerCase()) &&
          (bits === undefined || k.bitLength === bits) &&
          (secretType === null || k.secretType === secretType),
      );
      const page = all.slice(offset, offset + limit);
      const json: Record<string, unknown> = {
        secrets: page.map((k) => secretJson(req.base, k, undefined)),
        total: all.length,
      };
      const link = (o: number): string => {
        const p = new URLSearchParams(q);
        p.set("limit", String(limit));
        p.set("offset", String(o));
        return `${req.base}/v1/secrets?${p.toString()}`;
      };
      if (offset + limit < all.length) json.next = link(offset + limit);
      if (offset > 0) json.previous = link(Math.max(0, offset - limit));
      return { response: { status: 200, json }, facts: { project: caller.project } };
    },
  };

  private readonly getSecret = (id: string): RestOperation => ({
    name: "GetKeyMetadata",
    adminOnly: false,
    requestFacts: () => ({ keyId: id }),
    run: async (caller, req) => {
      const meta = await this.visible(caller, id);
      const consumers = microversion11(req)
        ? (await this.keys.listConsumers(caller, { keyId: id })).consumers.map(consumerJson)
        : undefined;
      return {
        response: { status: 200, json: secretJson(req.base, meta, consumers) },
        facts: facts(meta),
      };
    },
  });

  private readonly getPayload = (id: string): RestOperation => ({
    name: "GetKey",
    adminOnly: false,
    requestFacts: () => ({ keyId: id }),
    run: async (caller, req) => {
      const meta = await this.visible(caller, id);
      const accept = acceptedType(req.headers.accept, contentTypeOf(meta));
      const got = await this.keys.getKey(caller, { id }).catch(hideDestroyed(id));
      // One copy, in a buffer of its own (not Node's shared pool); the key service's is zeroed.
      const data = Buffer.alloc(got.material.length);
      data.set(got.material);
      got.material.fill(0);
      if (accept === "text/plain" && !isUtf8(data)) {
        data.fill(0);
        throw new LockboxError(
          "FAILED_PRECONDITION",
          "the payload is not UTF-8 text; ask for application/octet-stream",
          "Accept",
        );
      }
      return { response: { status: 200, bytes: { contentType: accept, data } }, facts: facts(got.key) };
    },
  });

  private readonly deleteSecret = (id: string): RestOperation => ({
    name: "DeleteKey",
    adminOnly: false,
    requestFacts: () => ({ keyId: id }),
    run: async (caller, req) => {
      const force = queryFlag(req.query, "force");
      const meta = await this.visible(caller, id);
      await this.keys.deleteKey(caller, { id, force });
      return { response: { status: 204 }, facts: facts(meta) };
    },
  });

  // ---- consumers (microversion 1.1) ----

  private readonly listConsumers = (id: string): RestOperation => ({
    name: "ListConsumers",
    adminOnly: false,
    requestFacts: () => ({ keyId: id }),
    run: async (caller, req) => {
      const limit = queryInteger(req.query, "limit", LIST_LIMIT_DEFAULT, 0, LIST_LIMIT_MAX);
      const offset = queryInteger(req.query, "offset", 0, 0, OFFSET_MAX);
      const meta = await this.visible(caller, id);
      const all = (await this.keys.listConsumers(caller, { keyId: id })).consumers.map(consumerJson);
      return {
        response: { status: 200, json: { consumers: all.slice(offset, offset + limit), total: all.length } },
        facts: facts(meta),
      };
    },
  });

  private readonly addConsumer = (id: string): RestOperation => this.consumerChange(id, "AddConsumer");
  private readonly removeConsumer = (id: string): RestOperation => this.consumerChange(id, "RemoveConsumer");

  /** Both answer 200 with the secret and all of its consumers, as Barbican does. */
  private consumerChange(id: string, name: "AddConsumer" | "RemoveConsumer"): RestOperation {
    return {
      name,
      adminOnly: false,
      requestFacts: () => ({ keyId: id }),
      run: async (caller, req) => {
        requireJson(req);
        const c = parseConsumer(await req.body());
        await this.visible(caller, id);
        const request = {
          keyId: id,
          service: c.service,
          resourceType: c.resource_type,
          resourceId: c.resource_id,
        };
        const done =
          name === "AddConsumer"
            ? await this.keys.addConsumer(caller, request)
            : await this.keys.removeConsumer(caller, request);
        return {
          response: { status: 200, json: secretJson(req.base, done.key, done.consumers.map(consumerJson)) },
          facts: facts(done.key),
        };
      },
    };
  }

  // ---- orders ----

  private readonly createOrder: RestOperation = {
    name: "CreateKey",
    adminOnly: false,
    requestFacts: () => ({}),
    run: async (caller, req) => {
      requireJson(req);
      const body = asObject(parseJson(await req.body()), "body");
      refuseUnknown(body, ORDER_FIELDS, "");
      if (body.type !== "key")
        throw invalidArgument("type", "must be key (the only order type lockbox makes)");
      const m = asObject(body.meta, "meta");
      refuseUnknown(m, ORDER_META_FIELDS, "meta.");
      const name = optionalString(m, "name", "meta.name") ?? null;
      const algorithm = optionalString(m, "algorithm", "meta.algorithm");
      if (algorithm === undefined || algorithm.toUpperCase() !== "AES")
        throw invalidArgument("meta.algorithm", "must be aes");
      const bitLength = optionalInteger(m, "bit_length", "meta.bit_length");
      if (bitLength === undefined) throw invalidArgument("meta.bit_length", "is required");
      const mode = optionalString(m, "mode", "meta.mode") ?? null;
      checkMode(mode ?? undefined, "meta.mode");
      const expiration = optionalTime(m, "expiration", this.clock.now(), "meta.expiration");
      const contentType = optionalString(m, "payload_content_type", "meta.payload_content_type") ?? null;
      if (contentType !== null && contentType !== "application/octet-stream")
        throw invalidArgument("meta.payload_content_type", "must be application/octet-stream");
      const key = await this.keys.createKey(caller, {
        project: caller.project,
        scope: newScope(),
        name: name ?? UNNAMED_SECRET_NAME,
        algorithm: "AES",
        bitLength,
        ...(expiration !== undefined ? { expiresAt: expiration } : {}),
      });
      const orderMeta: OrderMeta = {
        name,
        algorithm,
        bit_length: bitLength,
        mode,
        expiration: typeof m.expiration === "string" ? m.expiration : null,
        payload_content_type: contentType,
      };
      const order = {
        id: randomUuid(),
        project: caller.project,
        creator: caller.identity,
        secretId: key.id,
        createdAtMs: key.createdAt.getTime(),
        meta: orderMeta,
      };
      await this.orders.put(order);
      const ref = `${req.base}/v1/orders/${order.id}`;
      return {
        response: { status: 202, headers: { Location: ref }, json: { order_ref: ref } },
        facts: facts(key),
      };
    },
  };

  private readonly getOrder = (id: string): RestOperation => ({
    name: "GetOrder",
    adminOnly: false,
    requestFacts: () => ({}),
    run: async (caller, req) => {
      const order = await this.orders.get(caller.project, id);
      return {
        response: { status: 200, json: orderJson(req.base, order) },
        facts: { keyId: order.secretId, project: order.project },
      };
    },
  });

  private readonly listOrders: RestOperation = {
    name: "ListOrders",
    adminOnly: false,
    requestFacts: () => ({}),
    run: async (caller, req) => {
      const limit = queryInteger(req.query, "limit", LIST_LIMIT_DEFAULT, 0, LIST_LIMIT_MAX);
      const offset = queryInteger(req.query, "offset", 0, 0, OFFSET_MAX);
      const all = await this.orders.list(caller.project);
      const json: Record<string, unknown> = {
        orders: all.slice(offset, offset + limit).map((o) => orderJson(req.base, o)),
        total: all.length,
      };
      const link = (o: number) => `${req.base}/v1/orders?limit=${limit}&offset=${o}`;
      if (offset + limit < all.length) json.next = link(offset + limit);
      if (offset > 0) json.previous = link(Math.max(0, offset - limit));
      return { response: { status: 200, json }, facts: { project: caller.project } };
    },
  };

  private readonly deleteOrder = (id: string): RestOperation => ({
    name: "DeleteOrder",
    adminOnly: false,
    requestFacts: () => ({}),
    run: async (caller) => {
      await this.orders.delete(caller.project, id);
      return { response: { status: 204 }, facts: { project: caller.project } };
    },
  });

  // ---- helpers ----

  /** A live key of the caller's project; NOT_FOUND for anything else, alike. */
  private async visible(caller: RestCaller, id: string): Promise<SecretView> {
    const meta: SecretView = await this.keys.getKeyMetadata(caller, { id });
    if (meta.project !== caller.project || meta.state !== "active") throw notFound(`secret ${id}`);
    return meta;
  }

  private async liveKeys(caller: RestCaller): Promise<SecretView[]> {
    const out: SecretView[] = [];
    let pageToken = "";
    for (let scanned = 0; scanned < SECRETS_SCANNED_MAX;) {
      const page = await this.keys.listKeys(caller, {
        project: caller.project,
        pageSize: Math.min(PAGE_SIZE_MAX, SECRETS_SCANNED_MAX - scanned),
        pageToken,
      });
      scanned += page.keys.length;
      for (const k of page.keys) if (k.state === "active") out.push(k);
      if (page.nextPageToken === "") break;
      pageToken = page.nextPageToken;
    }
    return out.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : 1));
  }
}

const consumerJson = (c: model.Consumer): ConsumerJson => ({
  service: c.service,
  resource_type: c.resourceType,
  resource_id: c.resourceId,
});

const isSecretType = (t: string): t is model.SecretType =>
  (model.SECRET_TYPES as readonly string[]).includes(t);

function queryFlag(q: URLSearchParams, key: string): boolean {
  const all = q.getAll(key);
  if (all.length === 0) return false;
  const v = all[0]!.toLowerCase();
  if (all.length > 1 || (v !== "true" && v !== "false")) throw invalidArgument(key, "must be true or false");
  return v === "true";
}

const route = (op: RestOperation, readOnly: boolean): Match => ({ route: { op, readOnly } });
const notFoundMatch = (): Match => ({ refuse: notFound("resource"), status: 404 });
const facts = (meta: model.KeyMeta) => ({ keyId: meta.id, project: meta.project });
const clip = (s: string): string => (s.length <= 64 ? s : s.slice(0, 64) + "…");

function versions(base: string, status: 200 | 300): RestResponse {
  const v = versionJson(base);
  return status === 300 ? { status, json: { versions: { values: [v] } } } : { status, json: { version: v } };
}

/** A destroyed key read between the metadata check and the read is NOT_FOUND too. */
const hideDestroyed =
  (id: string) =>
  (e: unknown): never => {
    if (isLockboxError(e, "FAILED_PRECONDITION")) throw notFound(`secret ${id}`);
    throw e;
  };

/** Each Barbican secret is its own placement scope, as Barbican's secrets are independent. */
const newScope = (): string => `barbican-${randomBytes(8).toString("hex")}`;

function randomUuid(): string {
  const b = randomBytes(16);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export const microversion11 = (req: RestRequest): boolean => {
  const v = req.headers["openstack-api-version"];
  return typeof v === "string" && /^\s*key-manager\s+(1\.1|latest)\s*$/i.test(v);
};

function requireJson(req: RestRequest): void {
  const type = req.headers["content-type"];
  if (typeof type !== "string" || !/^application\/json\s*(;.*)?$/i.test(type))
    throw new LockboxError("INVALID_ARGUMENT", "Content-Type must be application/json", "Content-Type");
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    throw invalidArgument("body", "is not valid JSON");
  }
}

function asObject(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw invalidArgument(field, "must be a JSON object");
  return v as Record<string, unknown>;
}

function refuseUnknown(o: Record<string, unknown>, known: Set<string>, prefix: string): void {
  for (const k of Object.keys(o))
    if (!known.has(k)) throw invalidArgument(`${prefix}${clip(k)}`, "is not a known field");
}

function optionalString(o: Record<string, unknown>, key: string, field = key): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw invalidArgument(field, "must be a string");
  return v;
}

function optionalInteger(o: Record<string, unknown>, key: string, field = key): number | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
    throw invalidArgument(field, "must be a non-negative integer");
  return v;
}

function optionalTime(o: Record<string, unknown>, key: string, now: Date, field = key): Date | undefined {
  const v = optionalString(o, key, field);
  if (v === undefined) return undefined;
  const ms = Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(v) ? v : `${v}Z`);
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(v) || !Number.isFinite(ms))
    throw invalidArgument(field, "must be an ISO 8601 time");
  if (ms <= now.getTime()) throw invalidArgument(field, "must be in the future");
  return new Date(ms);
}

function checkMode(mode: string | undefined, field = "mode"): void {
  if (mode !== undefined && !MODES.has(mode.toLowerCase()))
    throw invalidArgument(field, "is not a known cipher mode");
}

function queryInteger(q: URLSearchParams, key: string, dflt: number, min: number, max: number): number {
  const all = q.getAll(key);
  if (all.length === 0) return dflt;
  const v = all[0]!;
  if (all.length > 1 || !/^\d{1,9}$/.test(v)) throw invalidArgument(key, "must be an integer");
  const n = Number(v);
  if (n < min || n > max) throw invalidArgument(key, `must be in ${min}..${max}`);
  return n;
}

/** The payload's bytes, by its declared content type and encoding (Barbican's two ways of sending one). */
function decodePayload(body: Record<string, unknown>): Buffer {
  const payload = body.payload;
  if (typeof payload !== "string") throw invalidArgument("payload", "must be a string");
  const type = (optionalString(body, "payload_content_type") ?? "").toLowerCase().replace(/\s+/g, "");
  const encoding = optionalString(body, "payload_content_encoding");
  if (type === "application/octet-stream") {
    if (encoding?.toLowerCase() !== "base64")
      throw invalidArgument("payload_content_encoding", "must be base64 for application/octet-stream");
    if (
      payload.length > Math.ceil(PAYLOAD_BYTES_MAX / 3) * 4 + 4 ||
      !/^[A-Za-z0-9+/]*={0,2}$/.test(payload) ||
      payload.length % 4 !== 0
    )
      throw invalidArgument("payload", "is not valid base64 (or too long)");
    return Buffer.from(payload, "base64");
  }
  if (type === "text/plain" || type === "text/plain;charset=utf-8") {
    if (encoding !== undefined)
      throw invalidArgument("payload_content_encoding", "must be absent for text/plain");
    const data = Buffer.from(payload, "utf8");
    if (data.length > PAYLOAD_BYTES_MAX)
      throw invalidArgument("payload", `must be at most ${PAYLOAD_BYTES_MAX} bytes`);
    return data;
  }
  throw invalidArgument("payload_content_type", "must be application/octet-stream or text/plain");
}

function parseConsumer(body: Buffer): ConsumerJson {
  const o = asObject(parseJson(body), "body");
  refuseUnknown(o, new Set(["service", "resource_type", "resource_id"]), "");
  const get = (k: string): string => {
    const v = optionalString(o, k);
    if (v === undefined || v.length === 0 || v.length > 255)
      throw invalidArgument(k, "must be 1..255 characters");
    return v;
  };
  return { service: get("service"), resource_type: get("resource_type"), resource_id: get("resource_id") };
}

/** The media type to answer a payload read with; FAILED_PRECONDITION (406) when none can be. */
function acceptedType(accept: string | undefined, dflt: string): "application/octet-stream" | "text/plain" {
  if (accept === undefined || accept.trim() === "") return dflt as "application/octet-stream" | "text/plain";
  const types = accept.split(",").map((t) => t.split(";")[0]!.trim().toLowerCase());
  for (const t of types) {
    if (t === "application/octet-stream" || t === "text/plain") return t;
    if (t === "*/*" || t === "application/*" || t === "text/*")
      return (t === "text/*" ? "text/plain" : dflt) as "application/octet-stream" | "text/plain";
  }
  throw new LockboxError(
    "FAILED_PRECONDITION",
    "Accept must allow application/octet-stream or text/plain",
    "Accept",
  );
}

function isUtf8(b: Buffer): boolean {
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(b);
    return true;
  } catch {
    return false;
  }
}
