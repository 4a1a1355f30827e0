/**
 * The peer's audit log: who asked for which key, which operation, when, and the outcome
 * (DESIGN.md §7). Records live in the "audit" sublevel keyed by a 16-hex-digit sequence number,
 * so they scan in order; the sequence continues across restarts. Appends go through the store's
 * group commit, so a record is durable when append() resolves.
 *
 * - Hash-chained (audit-chain.ts): an edited or removed record is found offline by
 *   verifyAuditLog() (`lockbox audit verify`).
 * - Retention keeps at most `recordsMax` records and none older than `ageMaxMs`, dropping the
 *   oldest in batches and leaving an anchor, so the rest still verifies.
 * - Every string is stored escaped (audit-text.ts): no control character or escape sequence a
 *   client sent reaches a reader.
 * - Calls refused before they had an accountable identity are counted (refusal-tally.ts) and
 *   written as one record per source and reason per window, never one write each.
 *
 * Records carry strings only: the input type has no field that could take key bytes, and
 * `material` is typed `never` so passing a key's material by mistake does not compile.
 */
import { LockboxError, invalidArgument } from "../errors.js";
import { systemClock, type Clock } from "../time/clock.js";
import { UUID_PATTERN } from "../keys/validation.js";
import type { PeerStore, StoreOp } from "../store/peer-store.js";
import {
  ANCHOR_KEY,
  type AuditAnchor,
  AuditRecordDamaged,
  type AuditOutcome,
  type AuditRecord,
  type ChainVerdict,
  GENESIS_HASH,
  HEAD_KEY,
  OUTCOMES,
  RECORD_KEYS_BELOW,
  chainHashOf,
  decodeAnchor,
  decodeRecord,
  encodeAnchor,
  encodeHead,
  recordKey,
  sealRecord,
  verifyAuditChain,
} from "./audit-chain.js";
import { escapeClientText } from "./audit-text.js";
import {
  type RefusalCount,
  type RefusalInput,
  RefusalTally,
  type RefusalTallyOptions,
} from "./refusal-tally.js";

export type { AuditOutcome, ChainVerdict, RefusalInput };

export interface AuditEventInput {
  /** Certificate common name of the caller ("" when unauthenticated). */
  identity: string;
  /** RPC method name, e.g. "GetKey". */
  operation: string;
  keyId?: string;
  project?: string;
  outcome: AuditOutcome;
  /** gRPC status code name, e.g. "NOT_FOUND". */
  status: string;
  /** Free text for operators. Never key bytes. */
  detail?: string;
  /** For an aggregate: where the calls came from (remote address or identity). */
  source?: string;
  /** Calls this record stands for (default 1). */
  count?: number;
  /** Key material must never reach the audit log. */
  material?: never;
}

export interface AuditEvent {
  sequence: number;
  time: Date;
  identity: string;
  operation: string;
  keyId: string;
  project: string;
  outcome: AuditOutcome;
  status: string;
  detail: string;
  source: string;
  count: number;
}

export interface AuditRetention {
  /** Most records kept. Default 1,000,000. */
  recordsMax?: number;
  /** Oldest record kept, by age. Default 400 days. */
  ageMaxMs?: number;
}

export interface AuditLogOptions {
  /** Most records one list() call examines (default AUDIT_SCAN_MAX). */
  scanMax?: number;
  retention?: AuditRetention;
  refusals?: RefusalTallyOptions;
  /** Where a failed aggregate or retention write is reported (stderr by default). */
  log?: (line: string) => void;
  /**
   * Told of every record once it is durable, in sequence order, with its chain hashes: the copy
   * for a SIEM (audit-export.ts). It must not throw or block; the stored log stays the record.
   */
  exportRecord?: (record: ExportedAuditRecord) => void;
}

/** A record as exported: the stored fields, its time in ISO 8601, and its place in the hash chain. */
export interface ExportedAuditRecord {
  sequence: number;
  time: string;
  identity: string;
  operation: string;
  keyId: string;
  project: string;
  outcome: AuditOutcome;
  status: string;
  detail: string;
  source: string;
  count: number;
  /** The previous record's hash, and this record's: a SIEM can check the chain too. */
  prev: string;
  hash: string;
}

export interface AuditListRequest {
  /** Only events of this key ("" or absent: all). */
  keyId?: string;
  /** Only events of this identity ("" or absent: all). */
  identity?: string;
  /** 0 or absent means 100; at most 1000. */
  pageSize?: number;
  pageToken?: string;
}

export interface AuditListResponse {
  /** Oldest first. */
  events: AuditEvent[];
  /** "" when there are no more events. */
  nextPageToken: string;
}

/** Longest stored text per field (after escaping); longer values are cut (an audit write never fails on length). */
const FIELD_CHARS_MAX = {
  identity: 256,
  operation: 64,
  keyId: 128,
  project: 256,
  status: 32,
  detail: 1024,
  source: 256,
} as const;
/**
 * Default for the most events one list() call examines, so a filtered listing stays bounded: a
 * page may come back short (even empty) with a token to continue from where the scan stopped.
 */
export const AUDIT_SCAN_MAX = 10_000;
const PAGE_SIZE_DEFAULT = 100;
const PAGE_SIZE_MAX = 1000;
const TOKEN_PATTERN = /^a1-([0-9a-f]{16})$/;
const RECORDS_MAX_DEFAULT = 1_000_000;
const AGE_MAX_MS_DEFAULT = 400 * 24 * 3600 * 1000;
/** Retention runs at open and after this many appends. */
const PRUNE_EVERY_APPENDS = 1024;
/** Records dropped per batch, so pruning a large backlog never makes one huge write. */
const PRUNE_BATCH_MAX = 10_000;

const OUTCOME_OF_REFUSAL: Record<string, AuditOutcome> = {
  UNAUTHENTICATED: "denied",
  RESOURCE_EXHAUSTED: "error",
};

export class AuditLog {
  private readonly tally: RefusalTally;
  private appendsSincePrune = 0;
  private pruning: Promise<void> | undefined;
  private closed = false;

  private constructor(
    private readonly store: PeerStore,
    private readonly clock: Clock,
    private nextSequence: number,
    /** Hash of the newest record: the next one's `prev`. */
    private lastHash: string,
    private readonly scanMax: number,
    private readonly recordsMax: number,
    private readonly ageMaxMs: number,
    private readonly log: (line: string) => void,
    refusals: RefusalTallyOptions,
    private readonly exportRecord: ((record: ExportedAuditRecord) => void) | undefined,
  ) {
    this.tally = new RefusalTally((counts) => this.writeRefusals(counts), clock, refusals);
  }

  /** Opens the log; the next record follows (and links to) the newest one stored. */
  static async open(
    store: PeerStore,
    clock: Clock = systemClock,
    options: AuditLogOptions = {},
  ): Promise<AuditLog> {
    const scanMax = options.scanMax ?? AUDIT_SCAN_MAX;
    if (!Number.isInteger(scanMax) || scanMax < 1) throw new RangeError("scanMax must be a positive integer");
    const recordsMax = options.retention?.recordsMax ?? RECORDS_MAX_DEFAULT;
    const ageMaxMs = options.retention?.ageMaxMs ?? AGE_MAX_MS_DEFAULT;
    if (!Number.isSafeInteger(recordsMax) || recordsMax < 1)
      throw new RangeError("recordsMax must be a positive integer");
    if (!Number.isSafeInteger(ageMaxMs) || ageMaxMs < 1)
      throw new RangeError("ageMaxMs must be a positive integer");
    const last = await store
      .sublevel("audit")
      .iterator({ lt: RECORD_KEYS_BELOW, reverse: true, limit: 1 })
      .all();
    let next = 1;
    let lastHash = GENESIS_HASH;
    if (last.length > 0) {
      const [key, bytes] = last[0]!;
      let record: AuditRecord;
      try {
        record = decodeRecord(bytes);
      } catch (cause) {
        throw new LockboxError(
          "DATA_LOSS",
          `audit record ${key} is damaged; run 'lockbox audit verify'`,
          undefined,
          {
            cause,
          },
        );
      }
      next = Number.parseInt(key, 16) + 1;
      lastHash = chainHashOf(record, bytes);
    }
    if (!Number.isSafeInteger(next)) throw new LockboxError("DATA_LOSS", "audit log sequence is corrupt");
    const log = options.log ?? ((line: string) => process.stderr.write(line + "\n"));
    const auditLog = new AuditLog(
      store,
      clock,
      next,
      lastHash,
      scanMax,
      recordsMax,
      ageMaxMs,
      log,
      options.refusals ?? {},
      options.exportRecord,
    );
    await auditLog.prune();
    return auditLog;
  }

  /** Appends one event; resolves once it is synced. */
  async append(input: AuditEventInput): Promise<AuditEvent> {
    if (!OUTCOMES.includes(input.outcome))
      throw new TypeError(`unknown audit outcome ${String(input.outcome)}`);
    const count = input.count ?? 1;
    if (!Number.isSafeInteger(count) || count < 1)
      throw new TypeError("audit count must be a positive integer");
    const content = {
      sequence: this.nextSequence++,
      time: this.clock.now().getTime(),
      identity: text("identity", input.identity),
      operation: text("operation", input.operation),
      keyId: text("keyId", input.keyId ?? ""),
      project: text("project", input.project ?? ""),
      outcome: input.outcome,
      status: text("status", input.status),
      detail: text("detail", input.detail ?? ""),
      source: text("source", input.source ?? ""),
      count,
    };
    // Chained in sequence order: the group commit keeps writes in the order they were queued.
    const prev = this.lastHash;
    const { bytes, hash } = sealRecord(content, prev);
    this.lastHash = hash;
    await this.store.write([
      { type: "put", sublevel: "audit", key: recordKey(content.sequence), value: bytes },
      {
        type: "put",
        sublevel: "audit",
        key: HEAD_KEY,
        value: encodeHead({ sequence: content.sequence, hash }),
        // Appends queued together share a batch: only the last head of it is written.
        coalesce: true,
      },
    ]);
    if (this.exportRecord !== undefined) {
      try {
        this.exportRecord({ ...content, time: new Date(content.time).toISOString(), prev, hash });
      } catch (err) {
        this.log(`lockbox: audit export failed for record ${content.sequence}: ${String(err)}`);
      }
    }
    if (++this.appendsSincePrune >= PRUNE_EVERY_APPENDS) {
      this.appendsSincePrune = 0;
      void this.prune().catch((err: unknown) => this.log(`lockbox: audit retention failed: ${String(err)}`));
    }
    return { ...content, time: new Date(content.time) };
  }

  /** Counts a refused call into this window's aggregate record (no write of its own). */
  countRefusal(refusal: RefusalInput): void {
    if (!this.closed) this.tally.count(refusal);
  }

  /** Writes the pending aggregate records and waits for retention; the store stays open. */
  async close(): Promise<void> {
    this.closed = true;
    this.tally.flush();
    await this.pending;
    await this.pruning;
  }

  /** Checks the whole chain (see verifyAuditLog). */
  verify(): Promise<ChainVerdict> {
    return verifyAuditLog(this.store);
  }

  /** Events oldest first, filtered by key and/or identity, in pages. */
  async list(req: AuditListRequest = {}): Promise<AuditListResponse> {
    const keyId = req.keyId ?? "";
    if (typeof keyId !== "string" || (keyId !== "" && !UUID_PATTERN.test(keyId))) {
      throw invalidArgument("key_id", "must be a UUID");
    }
    const identity = req.identity ?? "";
    if (typeof identity !== "string" || identity.length > FIELD_CHARS_MAX.identity) {
      throw invalidArgument("identity", `must be a string of at most ${FIELD_CHARS_MAX.identity} characters`);
    }
    const pageSize = req.pageSize === undefined || req.pageSize === 0 ? PAGE_SIZE_DEFAULT : req.pageSize;
    if (!Number.isInteger(pageSize) || pageSize < 0 || pageSize > PAGE_SIZE_MAX) {
      throw invalidArgument("page_size", `must be an integer in 0..${PAGE_SIZE_MAX}`);
    }
    const token = req.pageToken ?? "";
    let after: string | undefined;
    if (token !== "") {
      const m = typeof token === "string" ? TOKEN_PATTERN.exec(token) : null;
      if (m === null) throw invalidArgument("page_token", "is not a valid page token");
      after = m[1]!;
    }
    const wantKey = keyId.toLowerCase();
    const wantIdentity = escapeClientText(identity);
    const events: AuditEvent[] = [];
    let lastScanned: string | undefined;
    let scanned = 0;
    let more = false;
    const range = after === undefined ? { lt: RECORD_KEYS_BELOW } : { gt: after, lt: RECORD_KEYS_BELOW };
    for await (const [k, v] of this.store.sublevel("audit").iterator(range)) {
      if (events.length === pageSize || scanned === this.scanMax) {
        more = true;
        break;
      }
      scanned += 1;
      lastScanned = k;
      const event = decodeEvent(v, k);
      if (wantKey !== "" && event.keyId !== wantKey) continue;
      if (identity !== "" && event.identity !== wantIdentity) continue;
      events.push(event);
    }
    return { events, nextPageToken: more && lastScanned !== undefined ? `a1-${lastScanned}` : "" };
  }

  private pending: Promise<unknown> = Promise.resolve();

  private writeRefusals(counts: RefusalCount[]): void {
    const writes = counts.map((c) =>
      this.append({
        identity: "",
        operation: c.operation,
        outcome: OUTCOME_OF_REFUSAL[c.status] ?? "denied",
        status: c.status,
        detail: `${c.reason} (${c.count} ${c.count === 1 ? "call" : "calls"} since ${c.since.toISOString()})`,
        source: c.source,
        count: c.count,
      }).catch((err: unknown) =>
        this.log(
          `lockbox: AUDIT FAILURE: could not record ${c.count} refused ${c.operation} calls from ${c.source}: ${String(err)}`,
        ),
      ),
    );
    this.pending = Promise.all([this.pending, ...writes]);
  }

  /** Drops records beyond the retention bounds, oldest first, leaving an anchor (at most one run at a time). */
  private prune(): Promise<void> {
    this.pruning ??= this.pruneNow().finally(() => {
      this.pruning = undefined;
    });
    return this.pruning;
  }

  private async pruneNow(): Promise<void> {
    const audit = this.store.sublevel("audit");
    const anchorBytes = await audit.get(ANCHOR_KEY);
    let anchor: AuditAnchor | undefined = anchorBytes === undefined ? undefined : decodeAnchor(anchorBytes);
    for (;;) {
      const newest = this.nextSequence - 1;
      const dropThrough = newest - this.recordsMax;
      const tooOld = this.clock.now().getTime() - this.ageMaxMs;
      const ops: StoreOp[] = [];
      let lastDropped: { sequence: number; hash: string } | undefined;
      for await (const [k, v] of audit.iterator({ lt: RECORD_KEYS_BELOW, limit: PRUNE_BATCH_MAX })) {
        let record: AuditRecord;
        try {
          record = decodeRecord(v);
        } catch (err) {
          if (err instanceof AuditRecordDamaged) {
            this.log(`lockbox: audit retention stopped at damaged record ${k}; run 'lockbox audit verify'`);
            break;
          }
          throw err;
        }
        // The newest record always stays: the chain and the sequence continue from it.
        if (record.sequence >= newest) break;
        if (record.sequence > dropThrough && record.time >= tooOld) break;
        ops.push({ type: "del", sublevel: "audit", key: k });
        lastDropped = { sequence: record.sequence, hash: chainHashOf(record, v) };
      }
      if (lastDropped === undefined) return;
      anchor = {
        firstSequence: lastDropped.sequence + 1,
        prev: lastDropped.hash,
        dropped: (anchor?.dropped ?? 0) + ops.length,
      };
      ops.push({ type: "put", sublevel: "audit", key: ANCHOR_KEY, value: encodeAnchor(anchor) });
      await this.store.write(ops);
      if (ops.length - 1 < PRUNE_BATCH_MAX) return;
    }
  }
}

/**
 * Verifies the audit log's chain in `store` from the first kept record to the head; names the
 * first bad record. Works offline (`lockbox audit verify` opens the store of a stopped peer).
 */
export function verifyAuditLog(store: PeerStore): Promise<ChainVerdict> {
  const audit = store.sublevel("audit");
  return verifyAuditChain({
    records: () => audit.iterator({ lt: RECORD_KEYS_BELOW }),
    anchor: () => audit.get(ANCHOR_KEY),
    head: () => audit.get(HEAD_KEY),
  });
}

function text(field: keyof typeof FIELD_CHARS_MAX, value: unknown): string {
  if (typeof value !== "string") throw new TypeError(`audit field ${field} must be a string`);
  const escaped = escapeClientText(value);
  const max = FIELD_CHARS_MAX[field];
  return escaped.length > max ? `${escaped.slice(0, max - 1)}…` : escaped;
}

function decodeEvent(bytes: Uint8Array, key: string): AuditEvent {
  let r: AuditRecord;
  try {
    r = decodeRecord(bytes);
  } catch (cause) {
    throw new LockboxError("DATA_LOSS", `audit event ${key} is corrupt`, undefined, { cause });
  }
  return {
    sequence: r.sequence,
    time: new Date(r.time),
    identity: r.identity,
    operation: r.operation,
    keyId: r.keyId,
    project: r.project,
    outcome: r.outcome,
    status: r.status,
    detail: r.detail,
    source: r.source,
    count: r.count,
  };
}
