/**
 * The client's side of KeyService.Batch (keys.proto): calls to one endpoint made in the same turn
 * of the event loop go out as one message on a long-lived stream, and their replies come back
 * batched too, matched by tag. A unary call costs the client about as much CPU as the peer's
 * whole work on a GetKey; a batched one costs an encode and a decode of a small message.
 *
 * Semantics are the unary call's: each call has its own deadline (DEADLINE_EXCEEDED, its late
 * reply ignored); a reply's status is the unary call's status, with the field at fault. When the
 * stream breaks, its calls in flight fail UNAVAILABLE as a unary call on a dropped connection
 * does (the caller's retry rules apply: creates carry a client request id, so a retry is safe).
 * A peer without Batch (an older version) answers the stream UNIMPLEMENTED: the batcher then
 * reports `unsupported` and its calls are made unary by the client.
 */
import * as grpc from "@grpc/grpc-js";
import type { MethodDefinition } from "@grpc/proto-loader";
import type { BatchedCall } from "../gen/lockbox/v1/BatchedCall.js";
import type { ReplyBatch__Output } from "../gen/lockbox/v1/ReplyBatch.js";
import { LockboxClientError, fromServiceError, statusName } from "./client-error.js";

/** The server's bounds (key-call-batch.ts, edge-limits.ts): calls and bytes per message. */
const CALLS_PER_MESSAGE_MAX = 256;
/** Below the server's 64 KiB per message, leaving room for the framing of each call. */
const BYTES_PER_MESSAGE_MAX = 56 * 1024;
/** Per call in a message: tag, method name and length prefixes, over-estimated. */
const CALL_OVERHEAD_BYTES = 48;
/**
 * Calls one stream has sent and not seen answered; later ones wait here. The peer bounds an
 * identity's calls in flight (64 by default) and refuses more RESOURCE_EXHAUSTED: unary calls on
 * one connection never meet that bound because HTTP/2 lets 64 streams be open at once, and a
 * batch stream keeps the same pace.
 */
export const CALLS_IN_FLIGHT_MAX = 64;

/** Stream statuses that are the peer's answer to every call on it, kept as they are. */
const STREAM_ANSWERS: ReadonlySet<string> = new Set([
  "UNAUTHENTICATED",
  "PERMISSION_DENIED",
  "UNIMPLEMENTED",
  "RESOURCE_EXHAUSTED",
  "INVALID_ARGUMENT",
]);

interface PendingCall {
  readonly tag: number;
  readonly method: string;
  readonly request: Buffer;
  readonly resolve: (response: Buffer) => void;
  readonly reject: (err: LockboxClientError) => void;
  timer: NodeJS.Timeout | undefined;
  /** Written to the stream (counted in #sent until settled). */
  sent: boolean;
  done: boolean;
}

type BatchStream = grpc.ClientDuplexStream<{ calls: BatchedCall[] }, ReplyBatch__Output>;

export class CallBatcher {
  readonly #channel: grpc.Client;
  readonly #method: MethodDefinition<object, object, object, object>;
  readonly #endpoint: string;
  #stream: BatchStream | undefined;
  /** Calls sent or queued on the current stream, by tag. */
  readonly #calls = new Map<number, PendingCall>();
  #queue: PendingCall[] = [];
  #flushScheduled = false;
  #nextTag = 1;
  /** Calls sent on the stream and not yet settled. */
  #sent = 0;
  #unsupported = false;
  #closed = false;

  /** `method` is KeyService.Batch's definition (its codecs and path). */
  constructor(
    channel: grpc.Client,
    method: MethodDefinition<object, object, object, object>,
    endpoint: string,
  ) {
    this.#channel = channel;
    this.#method = method;
    this.#endpoint = endpoint;
  }

  /** The peer answered Batch UNIMPLEMENTED: make calls to it unary. */
  get unsupported(): boolean {
    return this.#unsupported;
  }

  /** Sends `request` (the method's serialized request) in the next batch; resolves with the serialized response. */
  call(method: string, request: Buffer, deadlineMs: number): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      if (this.#closed) {
        reject(new LockboxClientError("CANCELLED", "client is closed", undefined, this.#endpoint));
        return;
      }
      const tag = this.#nextTag++;
      const pending: PendingCall = {
        tag,
        method,
        request,
        resolve,
        reject,
        timer: undefined,
        sent: false,
        done: false,
      };
      pending.timer = setTimeout(
        () =>
          this.#settle(
            pending,
            new LockboxClientError(
              "DEADLINE_EXCEEDED",
              `no answer within ${deadlineMs} ms`,
              undefined,
              this.#endpoint,
            ),
          ),
        deadlineMs,
      );
      this.#calls.set(tag, pending);
      this.#queue.push(pending);
      this.#scheduleFlush();
    });
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#sent >= CALLS_IN_FLIGHT_MAX) return;
    this.#flushScheduled = true;
    setImmediate(() => this.#flush());
  }

  /** Fails every call in flight (CANCELLED) and ends the stream. */
  close(): void {
    this.#closed = true;
    this.#failAll(new LockboxClientError("CANCELLED", "client is closed", undefined, this.#endpoint));
    const stream = this.#stream;
    this.#stream = undefined;
    stream?.end();
  }

  #flush(): void {
    this.#flushScheduled = false;
    const waiting = this.#queue.filter((p) => !p.done);
    const room = Math.max(0, CALLS_IN_FLIGHT_MAX - this.#sent);
    const queue = waiting.slice(0, room);
    this.#queue = waiting.slice(room);
    if (queue.length === 0) return;
    const stream = this.#open();
    let calls: BatchedCall[] = [];
    let bytes = 0;
    for (const p of queue) {
      const size = p.request.length + p.method.length + CALL_OVERHEAD_BYTES;
      if (
        calls.length > 0 &&
        (calls.length === CALLS_PER_MESSAGE_MAX || bytes + size > BYTES_PER_MESSAGE_MAX)
      ) {
        stream.write({ calls });
        calls = [];
        bytes = 0;
      }
      p.sent = true;
      this.#sent += 1;
      calls.push({ tag: p.tag, method: p.method, request: p.request });
      bytes += size;
    }
    stream.write({ calls });
  }

  #open(): BatchStream {
    if (this.#stream !== undefined) return this.#stream;
    const m = this.#method;
    const stream = this.#channel.makeBidiStreamRequest(
      m.path,
      (v: { calls: BatchedCall[] }) => m.requestSerialize(v),
      (b: Buffer) => m.responseDeserialize(b) as ReplyBatch__Output,
      new grpc.Metadata(),
      {},
    ) as BatchStream;
    this.#stream = stream;
    stream.on("data", (batch: ReplyBatch__Output) => {
      for (const r of batch.replies) {
        const pending = this.#calls.get(Number(r.tag));
        if (pending === undefined) continue; // timed out earlier: its late answer is dropped
        if (r.code === 0) this.#settle(pending, r.response);
        else {
          const field = r.field === "" ? undefined : r.field;
          this.#settle(pending, new LockboxClientError(statusName(r.code), r.message, field, this.#endpoint));
        }
      }
    });
    const broken = (err: LockboxClientError): void => {
      if (this.#stream !== stream) return;
      this.#stream = undefined;
      if (err.code === "UNIMPLEMENTED") this.#unsupported = true;
      this.#failAll(err);
    };
    stream.on("error", (err: grpc.ServiceError) => {
      const e = fromServiceError(err, this.#endpoint);
      // A status the peer gave the stream answers each of its calls (no certificate, an older
      // peer); anything else (reset, cancelled by a closing peer, connection lost) is a dropped
      // connection, retryable like a unary call's.
      broken(
        STREAM_ANSWERS.has(e.code)
          ? e
          : new LockboxClientError(
              "UNAVAILABLE",
              `the batch stream broke (${e.code}: ${e.message})`,
              undefined,
              this.#endpoint,
              { cause: err },
            ),
      );
    });
    stream.on("status", (s: grpc.StatusObject) => {
      if (s.code === grpc.status.OK)
        broken(
          new LockboxClientError("UNAVAILABLE", "the peer ended the batch stream", undefined, this.#endpoint),
        );
    });
    return stream;
  }

  #failAll(err: LockboxClientError): void {
    this.#queue = [];
    for (const p of [...this.#calls.values()]) this.#settle(p, err);
    this.#sent = 0;
  }

  #settle(p: PendingCall, outcome: Buffer | LockboxClientError): void {
    if (p.done) return;
    p.done = true;
    clearTimeout(p.timer);
    this.#calls.delete(p.tag);
    if (p.sent) {
      this.#sent -= 1;
      if (this.#queue.length > 0) this.#scheduleFlush();
    }
    if (outcome instanceof LockboxClientError) p.reject(outcome);
    else p.resolve(outcome);
  }
}
