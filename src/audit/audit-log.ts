/**
 * The peer's audit log: who asked for which key, which operation, when, and the outcome
 * (DESIGN.md §7). Events live in the "audit" sublevel keyed by a 16-hex-digit sequence number,
 * so they scan in order; the sequence continues across restarts. Appends go through the store's
 * group commit, so an event is durable when append() resolves.
 *
 * Events carry strings only: the input type has no field that could take key bytes, and
 * `material` is typed `never` so passing a key's material by mistake does not compile.
 */
import { LockboxError, invalidArgument } from "../errors.js";
import { systemClock, type Clock } from "../time/clock.js";
import { UUID_PATTERN } from "../keys/validation.js";
import type { PeerStore } from "../store/peer-store.js";

export type AuditOutcome = "ok" | "denied" | "not_found" | "invalid" | "error";
const OUTCOMES: readonly AuditOutcome[] = ["ok", "denied", "not_found", "invalid", "error"];

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

/** Longest stored text per field; longer values are cut (an audit write never fails on length). */
const FIELD_CHARS_MAX = {
  identity: 256,
  operation: 64,
  keyId: 64,
  project: 128,
  status: 32,
  detail: 1024,
} as const;
/**
 * Default for the most events one list() call examines, so a filtered listing stays bounded: a
 * page may come back short (even empty) with a token to continue from where the scan stopped.
 */
export const AUDIT_SCAN_MAX = 10_000;
const PAGE_SIZE_DEFAULT = 100;
const PAGE_SIZE_MAX = 1000;
const TOKEN_PATTERN = /^a1-([0-9a-f]{16})$/;

const sequenceKey = (sequence: number): string => sequence.toString(16).padStart(16, "0");

export class AuditLog {
  private constructor(
    private readonly store: PeerStore,
    private readonly clock: Clock,
    private nextSequence: number,
    private readonly scanMax: number,
  ) {}

  /** Opens the log; the next sequence follows the highest one stored. */
  static async open(
    store: PeerStore,
    clock: Clock = systemClock,
    options: { scanMax?: number } = {},
  ): Promise<AuditLog> {
    const scanMax = options.scanMax ?? AUDIT_SCAN_MAX;
    if (!Number.isInteger(scanMax) || scanMax < 1) throw new RangeError("scanMax must be a positive integer");
    const last = await store.sublevel("audit").keys({ reverse: true, limit: 1 }).all();
    const next = last.length === 0 ? 1 : Number.parseInt(last[0]!, 16) + 1;
    if (!Number.isSafeInteger(next)) throw new LockboxError("DATA_LOSS", "audit log sequence is corrupt");
    return new AuditLog(store, clock, next, scanMax);
  }

  /** Appends one event; resolves once it is synced. */
  async append(input: AuditEventInput): Promise<AuditEvent> {
    if (!OUTCOMES.includes(input.outcome))
      throw new TypeError(`unknown audit outcome ${String(input.outcome)}`);
    const event: AuditEvent = {
      sequence: this.nextSequence++,
      time: this.clock.now(),
      identity: text("identity", input.identity),
      operation: text("operation", input.operation),
      keyId: text("keyId", input.keyId ?? ""),
      project: text("project", input.project ?? ""),
      outcome: input.outcome,
      status: text("status", input.status),
      detail: text("detail", input.detail ?? ""),
    };
    const value = new Uint8Array(
      Buffer.from(JSON.stringify({ v: 1, ...event, time: event.time.getTime() }), "utf8"),
    );
    await this.store.write([{ type: "put", sublevel: "audit", key: sequenceKey(event.sequence), value }]);
    return event;
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
    const events: AuditEvent[] = [];
    let lastScanned: string | undefined;
    let scanned = 0;
    let more = false;
    const range = after === undefined ? {} : { gt: after };
    for await (const [k, v] of this.store.sublevel("audit").iterator(range)) {
      if (events.length === pageSize || scanned === this.scanMax) {
        more = true;
        break;
      }
      scanned += 1;
      lastScanned = k;
      const event = decodeEvent(v, k);
      if (wantKey !== "" && event.keyId !== wantKey) continue;
      if (identity !== "" && event.identity !== identity) continue;
      events.push(event);
    }
    return { events, nextPageToken: more && lastScanned !== undefined ? `a1-${lastScanned}` : "" };
  }
}

function text(field: keyof typeof FIELD_CHARS_MAX, value: unknown): string {
  if (typeof value !== "string") throw new TypeError(`audit field ${field} must be a string`);
  const max = FIELD_CHARS_MAX[field];
  return value.length > max ? `${value.slice(0, max - 1)}…` : value;
}

function decodeEvent(bytes: Uint8Array, key: string): AuditEvent {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(Buffer.from(bytes).toString("utf8")) as Record<string, unknown>;
  } catch (cause) {
    throw new LockboxError("DATA_LOSS", `audit event ${key} is corrupt`, undefined, { cause });
  }
  const strings = ["identity", "operation", "keyId", "project", "status", "detail"] as const;
  if (
    o === null ||
    typeof o !== "object" ||
    o.v !== 1 ||
    typeof o.sequence !== "number" ||
    typeof o.time !== "number" ||
    !OUTCOMES.includes(o.outcome as AuditOutcome) ||
    strings.some((f) => typeof o[f] !== "string")
  ) {
    throw new LockboxError("DATA_LOSS", `audit event ${key} is corrupt`);
  }
  return {
    sequence: o.sequence,
    time: new Date(o.time),
    identity: o.identity as string,
    operation: o.operation as string,
    keyId: o.keyId as string,
    project: o.project as string,
    outcome: o.outcome as AuditOutcome,
    status: o.status as string,
    detail: o.detail as string,
  };
}
