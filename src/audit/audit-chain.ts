/**
 * The audit log's hash chain (DESIGN.md §7): every record carries the hash
 * of the record before it (`prev`) and its own hash over its content and
 * `prev`, so an edited record fails its own hash, a removed one breaks the
 * sequence or the next record's `prev`, and a removed last record no longer
 * matches the head kept beside the records. Retention drops the oldest
 * records and leaves an anchor naming the first kept sequence and the hash
 * of the last dropped record, so the shortened chain still verifies from
 * its first record. verifyAuditChain() checks all of it offline, reading
 * the records in order with bounded memory, and names the first bad record.
 *
 * Records written before the chain existed (format 1, no hashes) are
 * accepted as a prefix: the first chained record links to the hash of the
 * last of them.
 */
import { hash } from "node:crypto";

export type AuditOutcome = "ok" | "denied" | "not_found" | "invalid" | "error";
export const OUTCOMES: readonly AuditOutcome[] = ["ok", "denied", "not_found", "invalid", "error"];

/** One stored record, as on disk. */
export interface AuditRecord {
  sequence: number;
  /** Milliseconds since the epoch. */
  time: number;
  identity: string;
  operation: string;
  keyId: string;
  project: string;
  outcome: AuditOutcome;
  status: string;
  detail: string;
  /** For an aggregate of refused calls: the remote address or identity they came from. */
  source: string;
  /** Calls this record stands for: 1, or more for an aggregate. */
  count: number;
  /** Hash of the previous record ("" for format 1 records). */
  prev: string;
  /** This record's hash ("" for format 1 records, whose hash is that of their bytes). */
  hash: string;
  format: 1 | 2;
}

/** Where retention cut the chain: the first kept sequence and the hash of the last dropped record. */
export interface AuditAnchor {
  firstSequence: number;
  prev: string;
  /** Records dropped so far, in all. */
  dropped: number;
}

/** The newest record's sequence and hash, written in the same batch as the record. */
export interface AuditHead {
  sequence: number;
  hash: string;
}

/** `prev` of the very first record. */
export const GENESIS_HASH = "0".repeat(64);

/** Record keys are 16 hex digits; the anchor and head sort after every one of them. */
export const RECORD_KEYS_BELOW = "g";
export const ANCHOR_KEY = "~anchor";
export const HEAD_KEY = "~head";

export const recordKey = (sequence: number): string => sequence.toString(16).padStart(16, "0");

type RecordContent = Omit<AuditRecord, "prev" | "hash" | "format">;

/** Encodes a new (format 2) record chained to `prev`; returns its bytes and hash. */
export function sealRecord(content: RecordContent, prev: string): { bytes: Uint8Array; hash: string } {
  const hash = contentHash(content, prev);
  const json = JSON.stringify({ v: 2, ...content, prev, hash });
  // A view into Buffer's shared pool, not a copy: the store copies it into its batch.
  return { bytes: Buffer.from(json, "utf8"), hash };
}

/** The hash the next record links to. */
export const chainHashOf = (record: AuditRecord, bytes: Uint8Array): string =>
  record.format === 2 ? record.hash : sha256(bytes);

export class AuditRecordDamaged extends Error {
  override readonly name = "AuditRecordDamaged";
}

/** Parses stored bytes; throws AuditRecordDamaged when they are not a record. */
export function decodeRecord(bytes: Uint8Array): AuditRecord {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(Buffer.from(bytes).toString("utf8")) as Record<string, unknown>;
  } catch {
    throw new AuditRecordDamaged("is not valid JSON");
  }
  const strings = ["identity", "operation", "keyId", "project", "status", "detail"] as const;
  if (
    o === null ||
    typeof o !== "object" ||
    (o.v !== 1 && o.v !== 2) ||
    !Number.isSafeInteger(o.sequence) ||
    typeof o.time !== "number" ||
    !OUTCOMES.includes(o.outcome as AuditOutcome) ||
    strings.some((f) => typeof o[f] !== "string")
  ) {
    throw new AuditRecordDamaged("does not have the fields of an audit record");
  }
  const format = o.v as 1 | 2;
  if (
    format === 2 &&
    (typeof o.source !== "string" ||
      !Number.isSafeInteger(o.count) ||
      typeof o.prev !== "string" ||
      typeof o.hash !== "string")
  ) {
    throw new AuditRecordDamaged("does not have the fields of a chained audit record");
  }
  return {
    sequence: o.sequence as number,
    time: o.time,
    identity: o.identity as string,
    operation: o.operation as string,
    keyId: o.keyId as string,
    project: o.project as string,
    outcome: o.outcome as AuditOutcome,
    status: o.status as string,
    detail: o.detail as string,
    source: format === 2 ? (o.source as string) : "",
    count: format === 2 ? (o.count as number) : 1,
    prev: format === 2 ? (o.prev as string) : "",
    hash: format === 2 ? (o.hash as string) : "",
    format,
  };
}

export function encodeAnchor(anchor: AuditAnchor): Uint8Array {
  return new Uint8Array(Buffer.from(JSON.stringify({ v: 1, ...anchor }), "utf8"));
}

export function decodeAnchor(bytes: Uint8Array): AuditAnchor {
  const o = parseObject(bytes);
  if (
    !Number.isSafeInteger(o?.firstSequence) ||
    typeof o?.prev !== "string" ||
    !Number.isSafeInteger(o?.dropped)
  )
    throw new AuditRecordDamaged("the retention anchor is damaged");
  return { firstSequence: o.firstSequence as number, prev: o.prev, dropped: o.dropped as number };
}

export function encodeHead(head: AuditHead): Uint8Array {
  return Buffer.from(JSON.stringify({ v: 1, ...head }), "utf8");
}

export function decodeHead(bytes: Uint8Array): AuditHead {
  const o = parseObject(bytes);
  if (!Number.isSafeInteger(o?.sequence) || typeof o?.hash !== "string")
    throw new AuditRecordDamaged("the head record is damaged");
  return { sequence: o.sequence as number, hash: o.hash };
}

export type ChainVerdict =
  | { ok: true; records: number; first?: number; last?: number; dropped: number }
  | { ok: false; records: number; sequence: number; problem: string };

/** What verifyAuditChain reads: records in key order (below RECORD_KEYS_BELOW), then anchor and head. */
export interface ChainSource {
  records(): AsyncIterable<[string, Uint8Array]>;
  anchor(): Promise<Uint8Array | undefined>;
  head(): Promise<Uint8Array | undefined>;
}

/** Walks the whole log; stops at the first bad record and names it. */
export async function verifyAuditChain(source: ChainSource): Promise<ChainVerdict> {
  let anchor: AuditAnchor | undefined;
  let head: AuditHead | undefined;
  try {
    const a = await source.anchor();
    anchor = a === undefined ? undefined : decodeAnchor(a);
    const h = await source.head();
    head = h === undefined ? undefined : decodeHead(h);
  } catch (err) {
    return { ok: false, records: 0, sequence: 0, problem: (err as Error).message };
  }
  let records = 0;
  let first: number | undefined;
  let last: AuditRecord | undefined;
  let lastHash = "";
  const bad = (sequence: number, problem: string): ChainVerdict => ({
    ok: false,
    records,
    sequence,
    problem,
  });
  for await (const [key, bytes] of source.records()) {
    const keySequence = /^[0-9a-f]{16}$/.test(key) ? Number.parseInt(key, 16) : NaN;
    if (!Number.isSafeInteger(keySequence))
      return bad(0, `a record is stored under an invalid key ${JSON.stringify(key)}`);
    let record: AuditRecord;
    try {
      record = decodeRecord(bytes);
    } catch (err) {
      return bad(keySequence, `record #${keySequence} is damaged: it ${(err as Error).message}`);
    }
    if (record.sequence !== keySequence)
      return bad(keySequence, `record #${keySequence} claims to be #${record.sequence} (edited)`);
    if (record.format === 2 && contentHash(record, record.prev) !== record.hash)
      return bad(keySequence, `record #${keySequence} was edited: its content does not match its hash`);
    if (last === undefined) {
      first = record.sequence;
      const expectedFirst = anchor?.firstSequence ?? 1;
      if (record.sequence > expectedFirst)
        return bad(
          expectedFirst,
          `record #${expectedFirst} is missing (the log starts at #${record.sequence})`,
        );
      if (record.sequence < expectedFirst)
        return bad(
          record.sequence,
          `record #${record.sequence} precedes the retention anchor (#${expectedFirst})`,
        );
      const expectedPrev = anchor?.prev ?? GENESIS_HASH;
      if (record.format === 2 && record.prev !== expectedPrev)
        return bad(
          record.sequence,
          `record #${record.sequence} does not link to ${anchor ? "the retention anchor" : "the start of the log"}`,
        );
    } else {
      if (record.sequence !== last.sequence + 1)
        return bad(
          last.sequence + 1,
          `record #${last.sequence + 1} is missing (#${last.sequence} is followed by #${record.sequence})`,
        );
      if (record.format === 1 && last.format === 2)
        return bad(record.sequence, `record #${record.sequence} is unchained but follows chained records`);
      if (record.format === 2 && record.prev !== lastHash)
        return bad(
          record.sequence,
          `record #${record.sequence} does not link to #${last.sequence}: one of them was edited and re-hashed`,
        );
    }
    records += 1;
    last = record;
    lastHash = chainHashOf(record, bytes);
  }
  if (head !== undefined) {
    if (last === undefined || head.sequence > last.sequence)
      return bad(
        (last?.sequence ?? 0) + 1,
        `record #${(last?.sequence ?? 0) + 1} is missing: the head names #${head.sequence}, the log ends ${last ? `at #${last.sequence}` : "empty"}`,
      );
    if (head.sequence < last.sequence || head.hash !== lastHash)
      return bad(last.sequence, `record #${last.sequence} does not match the head (edited, or the head was)`);
  } else if (last !== undefined && last.format === 2) {
    return bad(last.sequence, "the head record is missing");
  }
  return { ok: true, records, first, last: last?.sequence, dropped: anchor?.dropped ?? 0 };
}

function contentHash(c: RecordContent, prev: string): string {
  // A fixed field order: the hash must not depend on how a JSON parser orders keys.
  return sha256(
    JSON.stringify([
      2,
      c.sequence,
      c.time,
      c.identity,
      c.operation,
      c.keyId,
      c.project,
      c.outcome,
      c.status,
      c.detail,
      c.source,
      c.count,
      prev,
    ]),
  );
}

// One-shot: a Hash object per record costs twice the hashing of a record this small.
const sha256 = (data: string | Uint8Array): string => hash("sha256", data, "hex");

function parseObject(bytes: Uint8Array): Record<string, unknown> | undefined {
  try {
    const o = JSON.parse(Buffer.from(bytes).toString("utf8")) as unknown;
    return typeof o === "object" && o !== null ? (o as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
