/**
 * Every lockbox RPC runs through one wrapper, in this order:
 * authenticate (client certificate; call-admission.ts already refused a call
 * without one at its headers) -> refuse undecodable bytes -> authorize
 * (role) -> the operation -> audit -> reply. Errors of any step become a gRPC status in one place
 * (toGrpcStatus); unexpected ones are logged here, without key material,
 * and reach the client only as a generic INTERNAL. Nothing a client sends
 * can make a handler throw past this wrapper.
 */
import * as grpc from "@grpc/grpc-js";
import type * as protoLoader from "@grpc/proto-loader";
import { LockboxError } from "../errors.js";
import type { Clock } from "../time/clock.js";
import { UUID_PATTERN } from "../keys/validation.js";
import type { Caller } from "../identity/caller.js";
import type { ClientCertificateVerifier } from "../pki/client-certificate-verifier.js";
import { authenticate, requireAdmin } from "./authenticate.js";
import { type AuditEventInput, type AuditOutcome, type EdgeAuditSink, outcomeOf } from "./edge-audit.js";
import { statusName, toGrpcStatus, toServiceError } from "./grpc-status.js";
import { idempotencyOf } from "./proto-definitions.js";
import { isUndecodable } from "./undecodable-request.js";

/** What the audit line says about the key a call touched. Never key bytes. */
export interface AuditFacts {
  keyId?: string;
  project?: string;
}

export interface Operation<Req, Res> {
  /** The RPC method name, as audited: "GetKey". */
  readonly name: string;
  readonly adminOnly: boolean;
  /** Facts readable from the request alone, so even a refused call is audited with its key id. */
  requestFacts(request: Req): AuditFacts;
  run(caller: Caller, request: Req): Promise<{ response: Res; facts?: AuditFacts }>;
}

export interface EdgeContext {
  readonly verifier: ClientCertificateVerifier;
  readonly audit: EdgeAuditSink;
  readonly clock: Clock;
  /** Server-side log lines (stderr in `lockbox serve`). */
  readonly log: (line: string) => void;
}

const AUDIT_FIELD_CHARS_MAX = 128;
const AUDIT_DETAIL_CHARS_MAX = 256;

/**
 * `op` as a grpc-js unary handler. `method` is its definition from the proto: a method declared
 * NO_SIDE_EFFECTS is a read, which changes nothing, so when its audit record cannot be written
 * it fails (UNAVAILABLE, retryable) rather than hand out a key unrecorded. A write already
 * happened; it keeps its result and the gap is logged.
 */
export function auditedUnary<Req, Res>(
  op: Operation<Req, Res>,
  ctx: EdgeContext,
  method: protoLoader.MethodDefinition<object, object>,
): grpc.handleUnaryCall<Req, Res> {
  const readOnly = idempotencyOf(method) === "NO_SIDE_EFFECTS";
  return (call, callback) => {
    handle(op, readOnly, ctx, call)
      .then(
        (result) => ("response" in result ? callback(null, result.response) : callback(result.error)),
        // handle() catches everything; this is the last line of defence for a bug in it.
        (err: unknown) => {
          ctx.log(`lockbox: ${op.name}: unexpected failure in the call wrapper: ${describe(err)}`);
          callback(toServiceError(toGrpcStatus(err)));
        },
      )
      // A throw from grpc-js's callback would otherwise be an unhandled rejection, which ends
      // the process: log it instead.
      .catch((err: unknown) => ctx.log(`lockbox: ${op.name}: replying failed: ${describe(err)}`));
  };
}

async function handle<Req, Res>(
  op: Operation<Req, Res>,
  readOnly: boolean,
  ctx: EdgeContext,
  call: grpc.ServerUnaryCall<Req, Res>,
): Promise<{ response: Res } | { error: ReturnType<typeof toServiceError> }> {
  let identity = "";
  let facts: AuditFacts = {};
  try {
    facts = safeFacts(() => op.requestFacts(call.request));
    let caller: Caller;
    try {
      caller = authenticate(call, ctx.verifier, ctx.clock.now());
    } catch (err) {
      // Only a certificate that expired since the call's headers gets here: counted, not written.
      const status = toGrpcStatus(err);
      ctx.audit.countRefusal({
        source: call.getPeer().replace(/:\d+$/, ""),
        operation: op.name,
        status: statusName(status.code),
        reason: status.details,
      });
      return { error: toServiceError(status) };
    }
    identity = caller.identity;
    if (isUndecodable(call.request)) {
      const { code, field, reason } = call.request;
      throw new LockboxError(code, `${field}: ${reason}`, code === "INVALID_ARGUMENT" ? field : undefined);
    }
    if (op.adminOnly) requireAdmin(caller);
    const result = await op.run(caller, call.request);
    facts = { ...facts, ...(result.facts ?? {}) };
    const recorded = await audit(ctx, op, { identity, facts, outcome: "ok", status: "OK", detail: "" });
    if (!recorded && readOnly) {
      return {
        error: toServiceError(toGrpcStatus(new LockboxError("UNAVAILABLE", "audit log unavailable; retry"))),
      };
    }
    return { response: result.response };
  } catch (err) {
    const status = toGrpcStatus(err);
    if (status.code === grpc.status.INTERNAL || status.code === grpc.status.DATA_LOSS)
      ctx.log(`lockbox: ${op.name} failed: ${describe(err)}`);
    await audit(ctx, op, {
      identity,
      facts,
      outcome: outcomeOf(status.code),
      status: statusName(status.code),
      detail: status.details,
    });
    return { error: toServiceError(status) };
  }
}

async function audit<Req, Res>(
  ctx: EdgeContext,
  op: Operation<Req, Res>,
  e: { identity: string; facts: AuditFacts; outcome: AuditOutcome; status: string; detail: string },
): Promise<boolean> {
  const event: AuditEventInput = {
    identity: e.identity,
    operation: op.name,
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
    ctx.log(`lockbox: AUDIT FAILURE: could not record ${op.name} by '${e.identity}': ${describe(err)}`);
    return false;
  }
}

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

const clip = (s: string, max: number): string => (s.length <= max ? s : s.slice(0, max) + "…");

function describe(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}${err.stack ? `\n${err.stack}` : ""}`;
  return typeof err;
}
