/**
 * KeyService.Batch (keys.proto): many key calls over one long-lived stream, each message a batch
 * of calls, each call answered by a reply carrying its tag. On a 2-core storage node a grpc-js
 * unary call costs the client and the peer more CPU than most key calls' own work (a stream,
 * headers, trailers and their objects per call); a call in a batch costs one small protobuf
 * message inside a message shared with the calls made in the same turn.
 *
 * A call in a batch is the unary call by other means: the stream's client certificate is verified
 * again for every call (an identity revoked since the stream opened is refused from its next call),
 * the call takes a slot of its identity's in-flight bound (shared with unary calls and the REST
 * edge), its request passes its method's own size limit and strict wire check, and it runs
 * through the same call pipeline (authorize, validate, run, audit) with the same errors. Each call
 * is reported to `observe` as a call of its method (metrics, the refused-call log).
 *
 * What a client can make the peer hold is bounded: calls per message (CALLS_PER_BATCH_MAX), calls
 * in flight (the identity's bound), and replies not yet taken by the client: when the stream's
 * send buffer is full the stream stops reading calls until the client drains it (HTTP/2 flow
 * control then holds the client back).
 */
import * as grpc from "@grpc/grpc-js";
import type * as protoLoader from "@grpc/proto-loader";
import { describe, runCall } from "../edge/call-pipeline.js";
import type { InFlightLimit } from "../edge/in-flight.js";
import type { Caller } from "../identity/caller.js";
import type { BatchedCall__Output } from "../gen/lockbox/v1/BatchedCall.js";
import type { BatchedReply } from "../gen/lockbox/v1/BatchedReply.js";
import type { CallBatch__Output } from "../gen/lockbox/v1/CallBatch.js";
import type { ReplyBatch } from "../gen/lockbox/v1/ReplyBatch.js";
import type { EdgeContext, Operation } from "./audited-unary.js";
import { authenticate } from "./authenticate.js";
import type { ObservedCall } from "./call-observer.js";
import { grpcStatusOf, statusName, toGrpcStatus } from "./grpc-status.js";
import { idempotencyOf } from "./proto-definitions.js";
import { isUndecodable, refuseUndecodable } from "./undecodable-request.js";

/** Most calls one CallBatch message may carry; a message with more ends the stream RESOURCE_EXHAUSTED. */
export const CALLS_PER_BATCH_MAX = 256;

const KEY_SERVICE = "lockbox.v1.KeyService";

export interface KeyCallBatchOptions {
  /** The in-flight bound per identity the unary calls take their slots from. */
  readonly inFlight: InFlightLimit;
  /** Each call in a batch, as the call observer reports a unary call. */
  readonly observe?: (call: ObservedCall) => void;
  /** Open Batch streams, so that a closing server can end them (BatchStreams.endAll). */
  readonly streams: BatchStreams;
}

/** The Batch streams a server has open: a server that closes ends them once their calls are answered. */
export class BatchStreams {
  readonly #open = new Set<{ end(): void }>();
  #closing = false;

  get closing(): boolean {
    return this.#closing;
  }

  add(stream: { end(): void }): () => void {
    this.#open.add(stream);
    return () => this.#open.delete(stream);
  }

  /** New calls are refused UNAVAILABLE; each stream ends once its calls in flight are answered. */
  endAll(): void {
    this.#closing = true;
    for (const s of [...this.#open]) s.end();
  }
}

// The operations are of different request and response types; each is reached by its name.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyOperation = Operation<any, any>;

/**
 * The Batch handler. `operations` are KeyService's unary methods by name; `service` their
 * definitions with the server's strict, bounded deserializers (undecodable-request.ts).
 */
export function keyCallBatch(
  operations: Readonly<Record<string, AnyOperation>>,
  ctx: EdgeContext,
  service: protoLoader.ServiceDefinition,
  options: KeyCallBatchOptions,
): grpc.handleBidiStreamingCall<CallBatch__Output, ReplyBatch> {
  const methods = new Map<
    string,
    { op: AnyOperation; def: protoLoader.MethodDefinition<object, object>; readOnly: boolean }
  >();
  for (const [name, op] of Object.entries(operations)) {
    const def = service[name];
    if (def === undefined || def.requestStream || def.responseStream) continue;
    methods.set(name, { op, def, readOnly: idempotencyOf(def) === "NO_SIDE_EFFECTS" });
  }

  return (call) => {
    // A stream's remote address does not change: read it once, not once per call (getPeer and the
    // port strip cost more than the rest of a call's observation).
    let remote: string | undefined;
    const source = (): string => (remote ??= call.getPeer().replace(/:\d+$/, ""));
    /** Tags of this stream's calls not answered yet. */
    const inFlight = new Set<string>();
    let replies: BatchedReply[] = [];
    let flushScheduled = false;
    /** The client half-closed, or the server is closing: end once every call is answered. */
    let ending = false;
    /** The stream is over (ended, failed or cancelled): replies are dropped. */
    let over = false;
    let waitingForDrain = false;
    const forget = options.streams.add({ end: () => endWhenIdle() });

    const finish = (): void => {
      if (over) return;
      over = true;
      forget();
    };
    const endWhenIdle = (): void => {
      ending = true;
      if (inFlight.size === 0 && replies.length === 0 && !over) {
        finish();
        call.end();
      }
    };
    const flush = (): void => {
      flushScheduled = false;
      if (over || replies.length === 0) return;
      const batch = replies;
      replies = [];
      if (!call.write({ replies: batch }) && !waitingForDrain) {
        // The client is not taking replies: stop reading its calls until it does.
        waitingForDrain = true;
        call.pause();
        call.once("drain", () => {
          waitingForDrain = false;
          call.resume();
        });
      }
      if (ending) endWhenIdle();
    };
    const reply = (r: BatchedReply): void => {
      if (over) return;
      replies.push(r);
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flush);
      }
    };
    const fail = (code: grpc.status, details: string): void => {
      if (over) return;
      finish();
      call.emit("error", { code, details, metadata: new grpc.Metadata() });
    };

    const observe = (method: string, code: grpc.status, started: bigint): void => {
      if (options.observe === undefined) return;
      try {
        options.observe({
          service: KEY_SERVICE,
          method,
          status: statusName(code),
          seconds: Number(process.hrtime.bigint() - started) / 1e9,
          source: source(),
        });
      } catch {
        // An observer's failure must not change the call's answer.
      }
    };

    const start = (c: BatchedCall__Output): void => {
      const started = process.hrtime.bigint();
      const tag = String(c.tag);
      const method = typeof c.method === "string" ? c.method : "";
      const refuse = (code: grpc.status, message: string, field = ""): void => {
        observe(method || "(unknown)", code, started);
        reply({ tag, code, message, field });
      };
      if (inFlight.has(tag)) {
        return refuse(grpc.status.INVALID_ARGUMENT, `tag ${tag} is in use by a call in flight`, "tag");
      }
      if (ending || options.streams.closing) {
        return refuse(grpc.status.UNAVAILABLE, "this peer is closing the stream; retry");
      }
      const target = methods.get(method);
      if (target === undefined) {
        return refuse(
          grpc.status.UNIMPLEMENTED,
          `method '${method.slice(0, 64)}' is not a unary KeyService method`,
          "method",
        );
      }
      // Authenticated per call, as each unary call is at its headers: a certificate revoked or
      // expired since the stream opened is refused from its next call.
      let caller: Caller;
      try {
        caller = authenticate(call, ctx.verifier, ctx.clock.now());
      } catch (err) {
        const status = toGrpcStatus(err);
        ctx.audit.countRefusal({
          source: source(),
          operation: method,
          status: "UNAUTHENTICATED",
          reason: status.details,
        });
        return refuse(status.code, status.details);
      }
      const identity = caller.identity;
      const release = options.inFlight.acquire(identity);
      if (release === undefined) {
        const reason = options.inFlight.refusal(identity);
        ctx.audit.countRefusal({ source: identity, operation: method, status: "RESOURCE_EXHAUSTED", reason });
        return refuse(grpc.status.RESOURCE_EXHAUSTED, reason);
      }
      inFlight.add(tag);
      // A view of the received message, not a copy: ImportKey zeroes its material in place.
      const bytes = Buffer.isBuffer(c.request) ? c.request : Buffer.from(c.request);
      const request: unknown = target.def.requestDeserialize(bytes);
      void runCall(target.op, ctx, {
        request,
        readOnly: target.readOnly,
        source,
        // Verified just above, in this turn: the pipeline takes that caller rather than verify again.
        authenticate: () => caller,
        validate: refuseUndecodable,
      })
        .then((result) => {
          if ("response" in result) {
            observe(method, grpc.status.OK, started);
            reply({ tag, code: grpc.status.OK, response: target.def.responseSerialize(result.response) });
          } else {
            const status = grpcStatusOf(result.failure);
            observe(method, status.code, started);
            reply({ tag, code: status.code, message: status.details, field: status.field ?? "" });
          }
        })
        .catch((err: unknown) => {
          // runCall catches everything; this is the last line of defence for a bug in it.
          ctx.log(`lockbox: Batch ${method}: unexpected failure in the call wrapper: ${describe(err)}`);
          observe(method, grpc.status.INTERNAL, started);
          reply({ tag, code: grpc.status.INTERNAL, message: "internal error" });
        })
        .finally(() => {
          release();
          inFlight.delete(tag);
          if (ending) endWhenIdle();
        });
    };

    call.on("data", (batch: unknown) => {
      if (over) return;
      if (isUndecodable(batch)) {
        return fail(
          batch.code === "RESOURCE_EXHAUSTED" ? grpc.status.RESOURCE_EXHAUSTED : grpc.status.INVALID_ARGUMENT,
          `${batch.field}: ${batch.reason}`,
        );
      }
      const calls = (batch as CallBatch__Output).calls;
      if (calls.length > CALLS_PER_BATCH_MAX) {
        return fail(
          grpc.status.RESOURCE_EXHAUSTED,
          `calls: ${calls.length} in one message; at most ${CALLS_PER_BATCH_MAX}`,
        );
      }
      for (const c of calls) start(c);
    });
    call.on("end", () => endWhenIdle());
    call.on("cancelled", () => finish());
    call.on("error", () => finish());
  };
}
