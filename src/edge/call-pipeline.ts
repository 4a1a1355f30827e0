/**
 * The one call pipeline every lockbox call runs through, whatever its transport (gRPC in
 * src/server, the Barbican REST API in src/rest), in this order:
 *
 *   authenticate -> validate (what the transport could not decode) -> authorize (role)
 *   -> run the operation -> audit -> result
 *
 * A create may start its audit record early: the operation calls `committing` with the new key's
 * facts just before its write begins, and the "ok" record is appended then, so that its sync
 * overlaps the write's (on the ring, the quorum round; measured: ~15-20% more CreateKey calls per
 * second at 64 in flight, docs/architecture.md). The reply still waits for both. Should the write
 * then fail, a second record with the failure follows, saying it supersedes the first. A peer that
 * crashes in between leaves an "ok" record for a create whose reply was never sent: the record says
 * the write began, and the key store says whether it landed. (Written after the write, a crash in
 * between could leave a key on the ring that no record names.)
 *
 * A transport supplies only what is its own: how to find the caller (a client certificate, a
 * Keystone token), what it could not decode, and how a result or failure goes on its wire. The
 * rules (who may call what, what is audited and how, that a read whose audit record cannot be
 * written fails rather than hands out a key unrecorded, that unexpected errors reach the client
 * only as a generic INTERNAL) live here once. A caller that cannot be authenticated is counted
 * into the aggregated refusals (EdgeAuditSink.countRefusal), never written one record each.
 * Nothing a client sends can make runCall throw.
 */
import { LockboxError, type LockboxErrorCode } from "../errors.js";
import type { Caller } from "../identity/caller.js";
import { UUID_PATTERN } from "../keys/validation.js";
import { type AuditEventInput, type AuditOutcome, type EdgeAuditSink, outcomeOf } from "./edge-audit.js";
import { requireAdmin } from "./authorize.js";

/** What the audit line says about the key a call touched. Never key bytes. */
export interface AuditFacts {
  keyId?: string;
  project?: string;
}

/** Called by a mutating operation just before its write begins, with the facts of what it writes. */
export type Committing = (facts: AuditFacts) => void;

export interface Operation<Req, Res, C extends Caller = Caller> {
  /** The operation's name, as audited: "GetKey". Both transports use the same names for the same work. */
  readonly name: string;
  readonly adminOnly: boolean;
  /** Facts readable from the request alone, so even a refused call is audited with its key id. */
  requestFacts(request: Req): AuditFacts;
  /** `committing` may be called once, before the operation's write (see the comment at the top). */
  run(caller: C, request: Req, committing: Committing): Promise<{ response: Res; facts?: AuditFacts }>;
}

export interface PipelineContext {
  readonly audit: EdgeAuditSink;
  /** Server-side log lines (stderr in `lockbox serve`). */
  readonly log: (line: string) => void;
}

/** A failed call, in lockbox's terms; each transport maps it to its wire in one place. */
export interface CallFailure {
  readonly code: LockboxErrorCode;
  /** Safe for the caller: field names and ids, never key material. Generic for INTERNAL. */
  readonly message: string;
  /** For INVALID_ARGUMENT: the request field at fault. */
  readonly field?: string;
}

export type CallResult<Res> = { readonly response: Res } | { readonly failure: CallFailure };

export interface CallInput<Req, C extends Caller = Caller> {
  readonly request: Req;
  /** A read changes nothing: when its audit record cannot be written, it fails (UNAVAILABLE). */
  readonly readOnly: boolean;
  /** Where the call came from (remote address), for refusals counted without an identity. */
  source(): string;
  /** The caller, or a LockboxError (UNAUTHENTICATED) thrown. */
  authenticate(): C | Promise<C>;
  /** Refuses (throws) what the transport could not decode; runs after authentication. */
  validate?(request: Req): void;
}

export const INTERNAL_ERROR_MESSAGE = "internal error";
/** How a failure record that corrects this call's early "ok" record begins its detail. */
export const SUPERSEDES = "supersedes this call's earlier ok record: ";

const AUDIT_FIELD_CHARS_MAX = 128;
const AUDIT_DETAIL_CHARS_MAX = 256;

export async function runCall<Req, Res, C extends Caller = Caller>(
  op: Operation<Req, Res, C>,
  ctx: PipelineContext,
  input: CallInput<Req, C>,
): Promise<CallResult<Res>> {
  let identity = "";
  let facts: AuditFacts = {};
  // The "ok" record started when the operation's write began, if it announced one.
  let early: { facts: AuditFacts; recorded: Promise<boolean> } | undefined;
  try {
    facts = safeFacts(() => op.requestFacts(input.request));
    let caller: C;
    try {
      caller = await input.authenticate();
    } catch (err) {
      const failure = toCallFailure(err);
      if (failure.code === "INTERNAL")
        ctx.log(`lockbox: ${op.name}: authentication failed: ${describe(err)}`);
      ctx.audit.countRefusal({
        source: safeSource(input),
        operation: op.name,
        status: failure.code,
        reason: failure.message,
      });
      return { failure };
    }
    identity = caller.identity;
    input.validate?.(input.request);
    if (op.adminOnly) requireAdmin(caller);
    const committing: Committing = (announced) => {
      // A read writes nothing: its record is written after it, before the key is handed out.
      if (early !== undefined || input.readOnly) return;
      const f = { ...facts, ...safeFacts(() => announced) };
      early = {
        facts: f,
        recorded: audit(ctx, op.name, { identity, facts: f, outcome: "ok", status: "OK", detail: "" }),
      };
    };
    const result = await op.run(caller, input.request, committing);
    facts = { ...facts, ...safeFacts(() => result.facts ?? {}) };
    let recorded: boolean;
    if (early !== undefined && sameFacts(early.facts, facts)) {
      recorded = await early.recorded;
    } else {
      if (early !== undefined) await early.recorded;
      recorded = await audit(ctx, op.name, { identity, facts, outcome: "ok", status: "OK", detail: "" });
    }
    if (!recorded && input.readOnly) {
      return { failure: { code: "UNAVAILABLE", message: "audit log unavailable; retry" } };
    }
    return { response: result.response };
  } catch (err) {
    const failure = toCallFailure(err);
    if (failure.code === "INTERNAL" || failure.code === "DATA_LOSS")
      ctx.log(`lockbox: ${op.name} failed: ${describe(err)}`);
    // After the early "ok" record (in this order, so a reader meets the correction second).
    if (early !== undefined) await early.recorded;
    await audit(ctx, op.name, {
      identity,
      facts: early === undefined ? facts : early.facts,
      outcome: outcomeOf(failure.code),
      status: failure.code,
      detail: early === undefined ? failure.message : `${SUPERSEDES}${failure.message}`,
    });
    return { failure };
  }
}

/** Known LockboxErrors keep their (caller-safe) message; anything else is a generic INTERNAL. */
export function toCallFailure(err: unknown): CallFailure {
  if (err instanceof LockboxError && Object.hasOwn(KNOWN_CODES, err.code)) {
    if (err.code === "INTERNAL") return { code: "INTERNAL", message: INTERNAL_ERROR_MESSAGE };
    return err.field === undefined
      ? { code: err.code, message: err.message }
      : { code: err.code, message: err.message, field: err.field };
  }
  return { code: "INTERNAL", message: INTERNAL_ERROR_MESSAGE };
}

const KNOWN_CODES: Record<LockboxErrorCode, true> = {
  INVALID_ARGUMENT: true,
  NOT_FOUND: true,
  ALREADY_EXISTS: true,
  PERMISSION_DENIED: true,
  UNAUTHENTICATED: true,
  FAILED_PRECONDITION: true,
  UNAVAILABLE: true,
  RESOURCE_EXHAUSTED: true,
  DATA_LOSS: true,
  INTERNAL: true,
};

async function audit(
  ctx: PipelineContext,
  operation: string,
  e: { identity: string; facts: AuditFacts; outcome: AuditOutcome; status: string; detail: string },
): Promise<boolean> {
  const event: AuditEventInput = {
    identity: e.identity,
    operation,
    keyId: clip(e.facts.keyId ?? "", AUDIT_FIELD_CHARS_MAX),
    project: clip(e.facts.project ?? "", AUDIT_FIELD_CHARS_MAX),
    outcome: e.outcome,
    status: e.status,
    detail: clip(e.detail, AUDIT_DETAIL_CHARS_MAX),
  };
  try {
    await ctx.audit.append(event);
    return true;
  } catch (err) {
    ctx.log(`lockbox: AUDIT FAILURE: could not record ${operation} by '${e.identity}': ${describe(err)}`);
    return false;
  }
}

const sameFacts = (a: AuditFacts, b: AuditFacts): boolean => a.keyId === b.keyId && a.project === b.project;

/** Request facts come from untrusted input: only strings, clipped. */
function safeFacts(read: () => AuditFacts): AuditFacts {
  try {
    const f = read();
    const out: AuditFacts = {};
    // Ids are accepted in any case: record the canonical (lower-case) spelling, so that an
    // attempt spelled in upper case is not hidden from an audit search for that key.
    if (typeof f.keyId === "string") out.keyId = UUID_PATTERN.test(f.keyId) ? f.keyId.toLowerCase() : f.keyId;
    if (typeof f.project === "string") out.project = f.project;
    return out;
  } catch {
    return {};
  }
}

function safeSource(input: { source(): string }): string {
  try {
    return input.source();
  } catch {
    return "unknown";
  }
}

const clip = (s: string, max: number): string => (s.length <= max ? s : s.slice(0, max) + "…");

export function describe(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}${err.stack ? `\n${err.stack}` : ""}`;
  return typeof err;
}
