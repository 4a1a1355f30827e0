/**
 * ReplicaBatch and its reply on the wire (lockbox.v1.ReplicationService, proto/lockbox/v1/peer.proto),
 * as @grpc/proto-loader presents them (keepCase, oneofs, longs as numbers, empty lists for absent
 * repeated fields, and no defaults: a field at its proto3 default arrives absent, and is read here as
 * that default, `?? 0`, `?? ""`, `?? EMPTY`). Every decoder is strict: a frame from the network is
 * hostile until each field has the type and bound it must have, and a bad one throws
 * ReplicaWireInvalid naming the field, before anything acts on it. The replica still validates item
 * contents (record bytes, partition range, key ownership) itself.
 */
import type { LockboxErrorCode } from "../errors.js";
import {
  BATCH_ITEMS_MAX,
  PULL_BUCKETS_MAX,
  PULL_RECORDS_MAX,
  type ReplicaItem,
  type ReplicaItemResult,
} from "./peer-link.js";

export class ReplicaWireInvalid extends Error {
  override readonly name = "ReplicaWireInvalid";
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

export const PEER_ID_CHARS_MAX = 128;
export const KEY_ID_CHARS_MAX = 128;
export const FAILURE_MESSAGE_CHARS_MAX = 512;
/** Request ids are positive safe integers (uint64 on the wire, numbers here). */
export const REQUEST_ID_MAX = Number.MAX_SAFE_INTEGER;

const CODES: ReadonlySet<string> = new Set<LockboxErrorCode>([
  "INVALID_ARGUMENT",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "UNAUTHENTICATED",
  "FAILED_PRECONDITION",
  "UNAVAILABLE",
  "RESOURCE_EXHAUSTED",
  "DATA_LOSS",
  "INTERNAL",
]);

export interface WireItem {
  partition: number;
  put?: { record: Uint8Array; hint_for: string };
  get?: { id: string };
  digest?: Record<string, never>;
  pull?: { buckets: number[] };
}

export interface WireBatchFrame {
  request_id: number;
  from: string;
  items: WireItem[];
}

export interface WireFailure {
  code: string;
  message: string;
}

export interface WireResult {
  failure?: WireFailure;
  put?: Record<string, never>;
  get?: { found: boolean; record: Uint8Array };
  digest?: { digest: Uint8Array };
  pull?: { records: Uint8Array[] };
}

export interface WireReplyFrame {
  request_id: number;
  error?: WireFailure;
  results: WireResult[];
  offset: number;
  more: boolean;
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null;
/** The default of a bytes field that arrived absent. */
const EMPTY = new Uint8Array(0);
const isBytes = (x: unknown): x is Uint8Array => x instanceof Uint8Array;

/** The frame's request id, or null when it has none a reply could name. */
export function frameRequestId(raw: unknown): number | null {
  if (!isObject(raw)) return null;
  const id = raw.request_id;
  return typeof id === "number" && Number.isSafeInteger(id) && id > 0 ? id : null;
}

// ---- batches -------------------------------------------------------------------------------------

export function encodeItem(item: ReplicaItem): WireItem {
  switch (item.kind) {
    case "put":
      return { partition: item.partition, put: { record: item.record, hint_for: item.hintFor ?? "" } };
    case "get":
      return { partition: item.partition, get: { id: item.id } };
    case "digest":
      return { partition: item.partition, digest: {} };
    case "pull":
      return { partition: item.partition, pull: { buckets: item.buckets } };
  }
}

/** An upper bound on one item's encoded size inside a frame, for cutting batches into frames. */
export function itemWireBytes(item: ReplicaItem): number {
  const overhead = 24;
  switch (item.kind) {
    case "put":
      return overhead + item.record.byteLength + Buffer.byteLength(item.hintFor ?? "");
    case "get":
      return overhead + Buffer.byteLength(item.id);
    case "digest":
      return overhead;
    case "pull":
      return overhead + item.buckets.length * 5;
  }
}

/** Decodes the `from` and items of a batch frame; throws ReplicaWireInvalid for any bad field. */
export function decodeBatchFrame(raw: unknown): { from: string; items: ReplicaItem[] } {
  if (!isObject(raw)) throw new ReplicaWireInvalid("frame", "not a message");
  const from = raw.from;
  if (typeof from !== "string" || from.length === 0 || from.length > PEER_ID_CHARS_MAX)
    throw new ReplicaWireInvalid("from", `must be a peer id of 1 to ${PEER_ID_CHARS_MAX} characters`);
  const items = raw.items;
  if (!Array.isArray(items)) throw new ReplicaWireInvalid("items", "not a list");
  if (items.length === 0) throw new ReplicaWireInvalid("items", "empty");
  if (items.length > BATCH_ITEMS_MAX)
    throw new ReplicaWireInvalid("items", `${items.length} items, at most ${BATCH_ITEMS_MAX}`);
  return { from, items: items.map((x, i) => decodeItem(x, `items[${i}]`)) };
}

function decodeItem(raw: unknown, field: string): ReplicaItem {
  if (!isObject(raw)) throw new ReplicaWireInvalid(field, "not a message");
  const partition = raw.partition ?? 0;
  if (typeof partition !== "number" || !Number.isSafeInteger(partition) || partition < 0)
    throw new ReplicaWireInvalid(`${field}.partition`, "not a partition number");
  const sub = raw[String(raw.kind)];
  switch (raw.kind) {
    case "put": {
      const bytes = isObject(sub) ? (sub.record ?? EMPTY) : undefined;
      const hintFor = isObject(sub) ? (sub.hint_for ?? "") : undefined;
      if (!isBytes(bytes) || typeof hintFor !== "string")
        throw new ReplicaWireInvalid(`${field}.put`, "needs record bytes and a hint_for string");
      if (bytes.byteLength === 0) throw new ReplicaWireInvalid(`${field}.put.record`, "empty");
      if (hintFor.length > PEER_ID_CHARS_MAX)
        throw new ReplicaWireInvalid(`${field}.put.hint_for`, "too long");
      const record = new Uint8Array(bytes);
      return hintFor === ""
        ? { kind: "put", partition, record }
        : { kind: "put", partition, record, hintFor };
    }
    case "get": {
      const id = isObject(sub) ? (sub.id ?? "") : undefined;
      if (typeof id !== "string" || id.length === 0)
        throw new ReplicaWireInvalid(`${field}.get.id`, "must be a key id");
      if (id.length > KEY_ID_CHARS_MAX) throw new ReplicaWireInvalid(`${field}.get.id`, "too long");
      return { kind: "get", partition, id };
    }
    case "digest":
      return { kind: "digest", partition };
    case "pull": {
      if (!isObject(sub) || !Array.isArray(sub.buckets))
        throw new ReplicaWireInvalid(`${field}.pull.buckets`, "not a list");
      if (sub.buckets.length > PULL_BUCKETS_MAX)
        throw new ReplicaWireInvalid(`${field}.pull.buckets`, `more than ${PULL_BUCKETS_MAX}`);
      if (!sub.buckets.every((b) => typeof b === "number" && Number.isSafeInteger(b) && b >= 0))
        throw new ReplicaWireInvalid(`${field}.pull.buckets`, "not bucket numbers");
      return { kind: "pull", partition, buckets: [...(sub.buckets as number[])] };
    }
    default:
      throw new ReplicaWireInvalid(`${field}.kind`, "no item kind set");
  }
}

// ---- replies -------------------------------------------------------------------------------------

export function encodeResult(r: ReplicaItemResult): WireResult {
  if (!r.ok) return { failure: { code: r.code, message: r.message.slice(0, FAILURE_MESSAGE_CHARS_MAX) } };
  switch (r.kind) {
    case "put":
      return { put: {} };
    case "get":
      return { get: { found: r.record !== null, record: r.record ?? new Uint8Array(0) } };
    case "digest":
      return { digest: { digest: r.digest } };
    case "pull":
      return { pull: { records: r.records } };
  }
}

/** An upper bound on one result's encoded size, for keeping replies within the receiver's bound. */
export function resultWireBytes(r: WireResult): number {
  const overhead = 16;
  if (r.failure !== undefined) return overhead + r.failure.code.length + Buffer.byteLength(r.failure.message);
  if (r.get !== undefined) return overhead + r.get.record.byteLength;
  if (r.digest !== undefined) return overhead + r.digest.digest.byteLength;
  if (r.pull !== undefined) return r.pull.records.reduce((n, x) => n + x.byteLength + 6, overhead);
  return overhead;
}

/**
 * Decodes one part of the answer to a frame of `expected` items, of which `received` results came in
 * earlier parts: the part must start at `received`, not run past `expected`, and end exactly there
 * when no part follows; each result must be well-formed (its kind is checked against its item later,
 * by peer-link.ts checkResult). A frame refused as a whole yields its failure.
 */
export function decodeReplyPart(
  raw: unknown,
  expected: number,
  received: number,
): { results: ReplicaItemResult[]; more: boolean } | { refused: WireFailure } {
  if (!isObject(raw)) throw new ReplicaWireInvalid("reply", "not a message");
  if (isObject(raw.error)) return { refused: decodeFailure(raw.error, "reply.error") };
  const results = raw.results;
  if (!Array.isArray(results)) throw new ReplicaWireInvalid("reply.results", "not a list");
  const offset = raw.offset ?? 0;
  if (offset !== received)
    throw new ReplicaWireInvalid("reply.offset", `${String(offset)}, expected ${received}`);
  const more = raw.more ?? false;
  if (typeof more !== "boolean") throw new ReplicaWireInvalid("reply.more", "not a boolean");
  const end = received + results.length;
  if (end > expected || (!more && end !== expected))
    throw new ReplicaWireInvalid("reply.results", `${end} results for ${expected} items`);
  return {
    results: results.map((x, i) => decodeResult(x, `reply.results[${received + i}]`)),
    more,
  };
}

/** Cuts results into reply parts of about `partBytes` each (a larger result travels alone). */
export function replyParts(requestId: number, results: WireResult[], partBytes: number): WireReplyFrame[] {
  const parts: WireReplyFrame[] = [];
  let cur: WireResult[] = [];
  let bytes = 0;
  let offset = 0;
  for (const r of results) {
    const size = resultWireBytes(r);
    if (cur.length > 0 && bytes + size > partBytes) {
      parts.push({ request_id: requestId, results: cur, offset, more: true });
      offset += cur.length;
      cur = [];
      bytes = 0;
    }
    cur.push(r);
    bytes += size;
  }
  parts.push({ request_id: requestId, results: cur, offset, more: false });
  return parts;
}

function decodeFailure(raw: Record<string, unknown>, field: string): WireFailure {
  const code = typeof raw.code === "string" && CODES.has(raw.code) ? raw.code : "INTERNAL";
  const message = typeof raw.message === "string" ? raw.message : "";
  if (code === "INTERNAL" && raw.code !== "INTERNAL")
    return { code, message: `${field}: unknown error code` };
  return { code, message: message.slice(0, FAILURE_MESSAGE_CHARS_MAX) };
}

function decodeResult(raw: unknown, field: string): ReplicaItemResult {
  if (!isObject(raw)) throw new ReplicaWireInvalid(field, "not a message");
  const sub = raw[String(raw.kind)];
  switch (raw.kind) {
    case "failure": {
      if (!isObject(sub)) throw new ReplicaWireInvalid(`${field}.failure`, "not a message");
      const f = decodeFailure(sub, `${field}.failure`);
      return { ok: false, code: f.code as LockboxErrorCode, message: f.message };
    }
    case "put":
      return { ok: true, kind: "put" };
    case "get": {
      const found = isObject(sub) ? (sub.found ?? false) : undefined;
      const record = isObject(sub) ? (sub.record ?? EMPTY) : undefined;
      if (typeof found !== "boolean" || !isBytes(record))
        throw new ReplicaWireInvalid(`${field}.get`, "needs found and record");
      return { ok: true, kind: "get", record: found ? new Uint8Array(record) : null };
    }
    case "digest": {
      const digest = isObject(sub) ? (sub.digest ?? EMPTY) : undefined;
      if (!isBytes(digest)) throw new ReplicaWireInvalid(`${field}.digest`, "not bytes");
      return { ok: true, kind: "digest", digest: new Uint8Array(digest) };
    }
    case "pull":
      if (!isObject(sub) || !Array.isArray(sub.records) || !sub.records.every(isBytes))
        throw new ReplicaWireInvalid(`${field}.pull.records`, "not a list of bytes");
      if (sub.records.length > PULL_RECORDS_MAX)
        throw new ReplicaWireInvalid(`${field}.pull.records`, `more than ${PULL_RECORDS_MAX}`);
      return { ok: true, kind: "pull", records: sub.records.map((x) => new Uint8Array(x)) };
    default:
      throw new ReplicaWireInvalid(`${field}.kind`, "no result kind set");
  }
}
