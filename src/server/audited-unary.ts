/**
 * Every lockbox RPC runs through the transport-neutral call pipeline (src/edge/call-pipeline.ts:
 * authenticate -> validate -> authorize -> run -> audit), which the REST API (src/rest) uses too.
 * What is gRPC's own is here: the caller is the client certificate of the call's TLS connection
 * (call-admission.ts already refused a call without one at its headers), undecodable bytes are
 * refused as the validate step, and a failure becomes a gRPC status in one place (grpc-status.ts).
 * Nothing a client sends can make a handler throw past this wrapper.
 */
import * as grpc from "@grpc/grpc-js";
import type * as protoLoader from "@grpc/proto-loader";
import type { Clock } from "../time/clock.js";
import type { ClientCertificateVerifier } from "../pki/client-certificate-verifier.js";
import { type Operation, type PipelineContext, describe, runCall } from "../edge/call-pipeline.js";
import { authenticate } from "./authenticate.js";
import { grpcStatusOf, toGrpcStatus, toServiceError } from "./grpc-status.js";
import { idempotencyOf } from "./proto-definitions.js";
import { refuseUndecodable } from "./undecodable-request.js";

export type { AuditFacts, Committing, Operation } from "../edge/call-pipeline.js";

export interface EdgeContext extends PipelineContext {
  readonly verifier: ClientCertificateVerifier;
  readonly clock: Clock;
}

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
  const result = await runCall(op, ctx, {
    request: call.request,
    readOnly,
    source: () => call.getPeer().replace(/:\d+$/, ""),
    // call-admission.ts already refused a call without a valid certificate at its headers: only a
    // certificate that expired since then fails here.
    authenticate: () => authenticate(call, ctx.verifier, ctx.clock.now()),
    validate: refuseUndecodable,
  });
  return "response" in result ? result : { error: toServiceError(grpcStatusOf(result.failure)) };
}
