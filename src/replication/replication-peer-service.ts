/**
 * The receiving end of replication peer streams (lockbox.v1.ReplicationService.Replicate): handlers
 * for the peer's own gRPC server, behind its peer mTLS. A call is accepted only from a peer
 * certificate of the cluster CA that `admitPeer` admits (the same hook the raft transport takes:
 * membership and revocation are the control state's to say), and every frame must name that peer as
 * its sender, or the call ends PERMISSION_DENIED. Each accepted frame is decoded strictly
 * (replica-wire-codec.ts), handed to the replica, and answered under its request id; a frame of bad
 * shape is answered with an error and reaches no replica.
 *
 * Bounds: at most `inflightFramesMax` frames per call are being handled at once; beyond that the call
 * stops reading (HTTP/2 flow control holds the sender back), so a peer cannot queue unbounded work.
 * Frames themselves are bounded by the server's receive limit (64 KiB). An answer is cut into parts of
 * about `replyPartBytes`; all its parts together stay within `replyBytesMax` (results that would not
 * fit become RESOURCE_EXHAUSTED failures, largest first), so a single large result (a pull) fits the
 * sender's receive bound.
 */
import * as grpc from "@grpc/grpc-js";
import type { PeerCertificate } from "node:tls";
import { isLockboxError } from "../errors.js";
import { PeerCertificateVerifier, type PeerIdentity } from "../pki/peer-certificate-verifier.js";
import { peerRefusalStatus, refusalReason, type PeerRefusal } from "../pki/peer-refusal.js";
import { failure, type ReplicaBatch, type ReplicaBatchReply } from "./peer-link.js";
import {
  decodeBatchFrame,
  encodeResult,
  frameRequestId,
  ReplicaWireInvalid,
  replyParts,
  resultWireBytes,
  type WireReplyFrame,
  type WireResult,
} from "./replica-wire-codec.js";

export interface ReplicationPeerServiceOptions {
  /** This peer's id (for log lines). */
  self: string;
  /** PEM of the cluster CA that issues every peer certificate. */
  caCertificatePem: string;
  /** What answers a batch: this peer's Replica (`replica.handle`). */
  replica: { handle(batch: ReplicaBatch): Promise<ReplicaBatchReply> };
  /** As GrpcPeerTransportOptions.admitPeer: null admits, a string says why not. */
  admitPeer?: (peer: PeerIdentity) => string | PeerRefusal | null;
  /** Frames handled at once per call at most (the sender's in-flight bound should not exceed it). */
  inflightFramesMax?: number;
  /** All parts of one answer together at most (a single result may use it all: the sender's receive bound). */
  replyBytesMax?: number;
  /** Results per reply part, in bytes (a larger single result travels in a part of its own). */
  replyPartBytes?: number;
  log?: (line: string) => void;
}

export interface ReplicationServiceCounters {
  callsAccepted: number;
  refusedUnauthenticated: number;
  refusedNotAdmitted: number;
  refusedSenderMismatch: number;
  framesReceived: number;
  itemsReceived: number;
  /** Frames answered with an error for their shape (nothing of them reached the replica). */
  framesInvalid: number;
  /** Frames without a request id: the call was ended INVALID_ARGUMENT. */
  framesUnanswerable: number;
  /** Results replaced by RESOURCE_EXHAUSTED to keep a reply within replyBytesMax. */
  resultsTooLarge: number;
}

/** One answer's results at most, all parts together; also the sender's receive bound per message. */
export const REPLY_BYTES_MAX = 4 * 1024 * 1024;
/** Results per reply part: like requests, answers travel in messages of about 64 KiB. */
export const REPLY_PART_BYTES = 60 * 1024;

export class ReplicationPeerService {
  readonly #opts: Required<Omit<ReplicationPeerServiceOptions, "admitPeer" | "log">> &
    ReplicationPeerServiceOptions;
  readonly #verifier: PeerCertificateVerifier;
  readonly #calls = new Set<grpc.ServerDuplexStream<unknown, WireReplyFrame>>();
  #lastLogMs = 0;
  #logsInWindow = 0;
  readonly counters: ReplicationServiceCounters = {
    callsAccepted: 0,
    refusedUnauthenticated: 0,
    refusedNotAdmitted: 0,
    refusedSenderMismatch: 0,
    framesReceived: 0,
    itemsReceived: 0,
    framesInvalid: 0,
    framesUnanswerable: 0,
    resultsTooLarge: 0,
  };

  constructor(options: ReplicationPeerServiceOptions) {
    this.#opts = {
      inflightFramesMax: 8,
      replyBytesMax: REPLY_BYTES_MAX,
      replyPartBytes: REPLY_PART_BYTES,
      ...options,
    };
    this.#verifier = new PeerCertificateVerifier(options.caCertificatePem);
  }

  /** `server.addService(loadReplicationService().service, service.handlers())`. */
  handlers(): grpc.UntypedServiceImplementation {
    return {
      Replicate: (call: grpc.ServerDuplexStream<unknown, WireReplyFrame>) => this.#replicate(call),
    };
  }

  /** Ends every open call (UNAVAILABLE), e.g. before the replica's store closes. */
  close(): void {
    for (const call of [...this.#calls])
      call.emit("error", { code: grpc.status.UNAVAILABLE, details: "closing" });
    this.#calls.clear();
  }

  #replicate(call: grpc.ServerDuplexStream<unknown, WireReplyFrame>): void {
    const peer = this.#authenticate(call);
    if (typeof peer !== "string") {
      call.emit("error", peer);
      return;
    }
    this.counters.callsAccepted++;
    this.#calls.add(call);
    let done = false;
    let inflight = 0;
    let ended = false;
    const end = (err: Partial<grpc.StatusObject> | null): void => {
      if (done) return;
      done = true;
      this.#calls.delete(call);
      if (err === null) call.end();
      else call.emit("error", err);
    };
    const answer = (frame: WireReplyFrame): void => {
      if (!done) call.write(frame);
    };
    call.on("data", (raw: unknown) => {
      if (done) return;
      this.counters.framesReceived++;
      const requestId = frameRequestId(raw);
      if (requestId === null) {
        this.counters.framesUnanswerable++;
        this.#log(`replication: ended a call from ${peer}: a frame without a request id`);
        end({ code: grpc.status.INVALID_ARGUMENT, details: "request_id: must be a positive integer" });
        return;
      }
      const claimed = (raw as { from?: unknown }).from;
      if (typeof claimed === "string" && claimed !== "" && claimed !== peer) {
        this.counters.refusedSenderMismatch++;
        this.#log(`replication: refused peer ${peer} sending as ${JSON.stringify(claimed.slice(0, 64))}`);
        end({ code: grpc.status.PERMISSION_DENIED, details: `peer ${peer} may send only as itself` });
        return;
      }
      let batch: ReplicaBatch;
      try {
        batch = decodeBatchFrame(raw);
      } catch (e) {
        if (!(e instanceof ReplicaWireInvalid)) throw e;
        this.counters.framesInvalid++;
        this.#log(`replication: refused a frame from ${peer}: ${e.message}`);
        answer({
          request_id: requestId,
          error: { code: "INVALID_ARGUMENT", message: e.message },
          results: [],
          offset: 0,
          more: false,
        });
        return;
      }
      this.counters.itemsReceived += batch.items.length;
      inflight++;
      if (inflight >= this.#opts.inflightFramesMax) call.pause();
      void this.#handle(batch).then((results) => {
        inflight--;
        for (const part of replyParts(requestId, results, this.#opts.replyPartBytes)) answer(part);
        if (inflight < this.#opts.inflightFramesMax && !done) call.resume();
        if (ended && inflight === 0) end(null);
      });
    });
    call.on("end", () => {
      ended = true;
      if (inflight === 0) end(null);
    });
    call.on("error", () => {
      done = true;
      this.#calls.delete(call);
    });
    call.on("cancelled", () => {
      done = true;
      this.#calls.delete(call);
    });
  }

  async #handle(batch: ReplicaBatch): Promise<WireResult[]> {
    let reply: ReplicaBatchReply;
    try {
      reply = await this.#opts.replica.handle(batch);
    } catch {
      reply = { results: [] };
    }
    if (!Array.isArray(reply.results) || reply.results.length !== batch.items.length) {
      const f = failure("UNAVAILABLE", `replica ${this.#opts.self} did not answer every item`);
      return batch.items.map(() => encodeResult(f));
    }
    const results = reply.results.map(encodeResult);
    // Keep the reply within the sender's receive bound: the largest results give way first.
    let total = results.reduce((n, r) => n + resultWireBytes(r), 64);
    if (total > this.#opts.replyBytesMax) {
      const order = results.map((r, i) => [resultWireBytes(r), i] as const).sort((a, b) => b[0] - a[0]);
      for (const [bytes, i] of order) {
        if (total <= this.#opts.replyBytesMax) break;
        const f = encodeResult(
          failure("RESOURCE_EXHAUSTED", `result of ${bytes} bytes does not fit in a reply; ask for less`),
        );
        total += resultWireBytes(f) - bytes;
        results[i] = f;
        this.counters.resultsTooLarge++;
      }
    }
    return results;
  }

  #authenticate(call: {
    getAuthContext(): { sslPeerCertificate?: PeerCertificate } | null;
  }): string | Partial<grpc.StatusObject> {
    let identity: PeerIdentity;
    try {
      identity = this.#verifier.verify(call.getAuthContext()?.sslPeerCertificate?.raw);
    } catch (e) {
      if (!isLockboxError(e, "UNAUTHENTICATED")) throw e;
      this.counters.refusedUnauthenticated++;
      this.#log(`replication: refused a call: ${e.message}`);
      return { code: grpc.status.UNAUTHENTICATED, details: `peer call refused: ${e.message}` };
    }
    const refusal = this.#opts.admitPeer?.(identity) ?? null;
    if (refusal !== null) {
      this.counters.refusedNotAdmitted++;
      this.#log(`replication: refused a call from peer ${identity.peerId}: ${refusalReason(refusal)}`);
      // The code (fenced, removed, ...) travels in the trailer, as on every peer service.
      return peerRefusalStatus(identity.peerId, refusal);
    }
    return identity.peerId;
  }

  /** At most 10 lines per 10 s, so hostile input cannot flood the log. */
  #log(line: string): void {
    if (this.#opts.log === undefined) return;
    const now = Date.now();
    if (now - this.#lastLogMs > 10_000) {
      this.#lastLogMs = now;
      this.#logsInWindow = 0;
    }
    if (++this.#logsInWindow <= 10) this.#opts.log(line);
  }
}
