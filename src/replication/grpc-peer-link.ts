/**
 * PeerLink over gRPC (lockbox.v1.ReplicationService.Replicate, proto/lockbox/v1/peer.proto), behind
 * peer mTLS: one long-lived bidirectional call per destination peer. `send` cuts a batch into frames
 * that fit the receiver's request bound, writes each under a fresh request id, and resolves once every
 * frame is answered (answers are matched by id and may come in any order).
 *
 * Never hangs, never grows without bound:
 * - per peer at most `inflightFramesMax` frames and `inflightBytesMax` bytes are unanswered; the rest
 *   wait in a queue bounded by `queuedFramesMax` frames and `queuedBytesMax` bytes, beyond which a send
 *   fails at once (RESOURCE_EXHAUSTED);
 * - every frame has a deadline (`requestTimeoutMs`, from when it was queued): a late one fails
 *   UNAVAILABLE and its late answer is ignored;
 * - a stream that breaks (peer killed, connection reset, refused) fails every frame waiting or in
 *   flight on it with UNAVAILABLE at once, and the link reopens the stream on the next send after a
 *   capped exponential backoff; during the backoff, sends fail UNAVAILABLE at once, so a coordinator
 *   turns to a handoff peer instead of waiting on a dead one.
 * Retrying is the caller's business: a put is a merge, safe to send again.
 *
 * The server's certificate must be the peer the link means to reach (its peer id), as in the raft
 * transport (src/raft/grpc-peer-transport.ts), whose channel options and TLS material this shares.
 */
import * as grpc from "@grpc/grpc-js";
import { X509Certificate } from "node:crypto";
import { LockboxError } from "../errors.js";
import { peerDial, type PeerDialOverrides } from "../net/peer-dial.js";
import { peerIdOf } from "../pki/peer-certificate-verifier.js";
import { pinnedPeerCredentials } from "../pki/pinned-peer-credentials.js";
import {
  PEER_MESSAGE_BYTES_MAX,
  peerGrpcOptions,
  type PeerTlsMaterial,
} from "../raft/grpc-peer-transport.js";
import {
  BATCH_ITEMS_MAX,
  type PeerLink,
  type ReplicaBatch,
  type ReplicaBatchReply,
  type ReplicaItem,
  type ReplicaItemResult,
} from "./peer-link.js";
import {
  decodeReplyPart,
  encodeItem,
  frameRequestId,
  itemWireBytes,
  ReplicaWireInvalid,
  type WireBatchFrame,
  type WireReplyFrame,
} from "./replica-wire-codec.js";
import { loadReplicationService } from "./replication-proto.js";
import { REPLY_BYTES_MAX } from "./replication-peer-service.js";

export interface GrpcPeerLinkOptions {
  /** This peer's id: the `from` of every frame; its certificate must name it. */
  self: string;
  tls: PeerTlsMaterial;
  /** Known peers: id -> "host:port". */
  peers?: ReadonlyMap<string, string>;
  /** Peers dialled at another address than their member address (config.json `peerDialOverrides`). */
  dialOverrides?: PeerDialOverrides;
  /** Largest frame sent (the receiving server's request bound). */
  messageBytesMax?: number;
  /** Largest reply frame accepted. */
  replyBytesMax?: number;
  inflightFramesMax?: number;
  inflightBytesMax?: number;
  queuedFramesMax?: number;
  queuedBytesMax?: number;
  requestTimeoutMs?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  connectTimeoutMs?: number;
  log?: (line: string) => void;
}

const DEFAULTS = {
  messageBytesMax: PEER_MESSAGE_BYTES_MAX,
  replyBytesMax: REPLY_BYTES_MAX,
  inflightFramesMax: 8,
  inflightBytesMax: 8 * PEER_MESSAGE_BYTES_MAX,
  queuedFramesMax: 256,
  queuedBytesMax: 16 * 1024 * 1024,
  requestTimeoutMs: 5_000,
  reconnectMinMs: 50,
  reconnectMaxMs: 1_000,
  connectTimeoutMs: 1_000,
};

/** Room left in a frame for its request id, sender and framing. */
const FRAME_HEADER_BYTES = 512;

export interface GrpcPeerLinkCounters {
  /** Batch frames written to streams (messages on the wire). */
  framesSent: number;
  itemsSent: number;
  repliesReceived: number;
  /** Replies that named no frame in flight, or failed their shape check (the frame then fails). */
  repliesInvalid: number;
  framesTimedOut: number;
  /** Frames failed because their stream broke or could not be opened. */
  framesFailedUnavailable: number;
  /** Sends refused because a queue was full. */
  sendsRefusedBusy: number;
  streamsOpened: number;
  streamsBroken: number;
}

interface Frame {
  id: number;
  items: ReplicaItem[];
  bytes: number;
  /** Results of the answer's parts received so far, and their size. */
  got: ReplicaItemResult[];
  gotBytes: number;
  resolve: (results: ReplicaItemResult[]) => void;
  reject: (e: LockboxError) => void;
  timer: NodeJS.Timeout;
}

interface Link {
  id: string;
  address: string;
  client: grpc.Client | undefined;
  stream: grpc.ClientDuplexStream<WireBatchFrame, WireReplyFrame> | undefined;
  /** Waiting for the channel to become ready before the stream opens. */
  connecting: boolean;
  generation: number;
  queue: Frame[];
  queuedBytes: number;
  inflight: Map<number, Frame>;
  inflightBytes: number;
  blocked: boolean;
  backoffMs: number;
  retryAtMs: number;
  openedAtMs: number;
}

const unavailable = (message: string): LockboxError => new LockboxError("UNAVAILABLE", message);

export class GrpcPeerLink implements PeerLink {
  readonly self: string;
  readonly #opts: GrpcPeerLinkOptions & typeof DEFAULTS;
  readonly #links = new Map<string, Link>();
  #nextId = 1;
  #closed = false;
  readonly counters: GrpcPeerLinkCounters = {
    framesSent: 0,
    itemsSent: 0,
    repliesReceived: 0,
    repliesInvalid: 0,
    framesTimedOut: 0,
    framesFailedUnavailable: 0,
    sendsRefusedBusy: 0,
    streamsOpened: 0,
    streamsBroken: 0,
  };

  constructor(options: GrpcPeerLinkOptions) {
    this.#opts = { ...DEFAULTS, ...options };
    this.self = options.self;
    const own = peerIdOf(new X509Certificate(options.tls.certificatePem));
    if (own !== this.self) throw new RangeError(`this peer's certificate names ${own}, not ${this.self}`);
    for (const [id, address] of options.peers ?? []) this.setPeerAddress(id, address);
  }

  setPeerAddress(id: string, address: string): void {
    if (id === this.self || this.#closed) return;
    const link = this.#links.get(id);
    if (link !== undefined) {
      if (link.address === address) return;
      this.#broken(link, "peer address changed", false);
      link.client?.close();
      link.client = undefined;
      link.address = address;
      link.retryAtMs = 0;
      return;
    }
    this.#links.set(id, {
      id,
      address,
      client: undefined,
      stream: undefined,
      connecting: false,
      generation: 0,
      queue: [],
      queuedBytes: 0,
      inflight: new Map(),
      inflightBytes: 0,
      blocked: false,
      backoffMs: 0,
      retryAtMs: 0,
      openedAtMs: 0,
    });
  }

  removePeer(id: string): void {
    const link = this.#links.get(id);
    if (link === undefined) return;
    this.#broken(link, "peer removed", false);
    link.client?.close();
    this.#links.delete(id);
  }

  /** For tests and status. */
  linkStats(id: string): { queued: number; inflight: number; connected: boolean } | undefined {
    const l = this.#links.get(id);
    return l && { queued: l.queue.length, inflight: l.inflight.size, connected: l.stream !== undefined };
  }

  async send(to: string, batch: ReplicaBatch): Promise<ReplicaBatchReply> {
    if (this.#closed) throw unavailable("peer link closed");
    const link = this.#links.get(to);
    if (link === undefined) throw unavailable(`no address for peer ${to}`);
    if (batch.items.length > BATCH_ITEMS_MAX)
      throw new LockboxError("INVALID_ARGUMENT", `a batch holds at most ${BATCH_ITEMS_MAX} items`);
    if (Date.now() < link.retryAtMs)
      throw unavailable(`peer ${to} unreachable; retrying in ${link.retryAtMs - Date.now()} ms`);
    const groups = this.#cut(batch.items);
    const bytes = groups.reduce((n, g) => n + g.bytes, 0);
    if (
      link.queue.length + groups.length > this.#opts.queuedFramesMax ||
      link.queuedBytes + bytes > this.#opts.queuedBytesMax
    ) {
      this.counters.sendsRefusedBusy++;
      throw new LockboxError("RESOURCE_EXHAUSTED", `too much queued for peer ${to}`);
    }
    const answers = groups.map((g) => this.#enqueue(link, g.items, g.bytes));
    this.#pump(link);
    const parts = await Promise.all(answers);
    return { results: parts.flat() };
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const link of this.#links.values()) {
      this.#broken(link, "peer link closed", false);
      link.client?.close();
    }
    this.#links.clear();
  }

  /** Cuts items into frames of at most messageBytesMax (a single item never exceeds it: records are small). */
  #cut(items: ReplicaItem[]): { items: ReplicaItem[]; bytes: number }[] {
    const budget = this.#opts.messageBytesMax - FRAME_HEADER_BYTES;
    const out: { items: ReplicaItem[]; bytes: number }[] = [];
    let cur: { items: ReplicaItem[]; bytes: number } = { items: [], bytes: 0 };
    for (const item of items) {
      const size = itemWireBytes(item);
      if (size > budget)
        throw new LockboxError("INVALID_ARGUMENT", `an item of ${size} bytes exceeds a frame`);
      if (cur.items.length > 0 && cur.bytes + size > budget) {
        out.push(cur);
        cur = { items: [], bytes: 0 };
      }
      cur.items.push(item);
      cur.bytes += size;
    }
    if (cur.items.length > 0) out.push(cur);
    return out;
  }

  #enqueue(link: Link, items: ReplicaItem[], bytes: number): Promise<ReplicaItemResult[]> {
    return new Promise<ReplicaItemResult[]>((resolve, reject) => {
      const id = this.#nextId++;
      const frame: Frame = {
        id,
        items,
        bytes,
        got: [],
        gotBytes: 0,
        resolve,
        reject,
        timer: setTimeout(() => {
          if (this.#forget(link, frame)) {
            this.counters.framesTimedOut++;
            reject(unavailable(`peer ${link.id}: no answer within ${this.#opts.requestTimeoutMs} ms`));
            // Room in the window may have opened for queued frames.
            this.#pump(link);
          }
        }, this.#opts.requestTimeoutMs),
      };
      frame.timer.unref();
      link.queue.push(frame);
      link.queuedBytes += bytes;
    });
  }

  /** Takes `frame` off its link (queue or in flight); false if it was already settled. */
  #forget(link: Link, frame: Frame): boolean {
    if (link.inflight.get(frame.id) === frame) {
      link.inflight.delete(frame.id);
      link.inflightBytes -= frame.bytes;
      return true;
    }
    const i = link.queue.indexOf(frame);
    if (i < 0) return false;
    link.queue.splice(i, 1);
    link.queuedBytes -= frame.bytes;
    return true;
  }

  /** Writes queued frames while the in-flight window and the stream's buffer allow. */
  #pump(link: Link): void {
    if (this.#closed || link.queue.length === 0) return;
    if (link.stream === undefined) {
      if (!link.connecting) this.#open(link);
      if (link.stream === undefined) return;
    }
    const stream = link.stream;
    while (
      link.queue.length > 0 &&
      !link.blocked &&
      link.inflight.size < this.#opts.inflightFramesMax &&
      (link.inflight.size === 0 || link.inflightBytes + link.queue[0]!.bytes <= this.#opts.inflightBytesMax)
    ) {
      const frame = link.queue.shift()!;
      link.queuedBytes -= frame.bytes;
      link.inflight.set(frame.id, frame);
      link.inflightBytes += frame.bytes;
      this.counters.framesSent++;
      this.counters.itemsSent += frame.items.length;
      const ok = stream.write({ request_id: frame.id, from: this.self, items: frame.items.map(encodeItem) });
      if (!ok) {
        link.blocked = true;
        stream.once("drain", () => {
          link.blocked = false;
          this.#pump(link);
        });
      }
    }
  }

  /** Opens the stream once the channel is ready; a failure to connect fails what waits (UNAVAILABLE). */
  #open(link: Link): void {
    const client = this.#client(link);
    if (client.getChannel().getConnectivityState(true) !== grpc.connectivityState.READY) {
      const generation = link.generation;
      link.connecting = true;
      client.waitForReady(Date.now() + this.#opts.connectTimeoutMs, (err) => {
        if (link.generation !== generation || this.#closed) return;
        link.connecting = false;
        if (err) this.#broken(link, `not reachable: ${err.message}`, true);
        else this.#pump(link);
      });
      return;
    }
    const ctor = client as unknown as {
      Replicate(): grpc.ClientDuplexStream<WireBatchFrame, WireReplyFrame>;
    };
    const stream = ctor.Replicate();
    link.stream = stream;
    link.blocked = false;
    link.openedAtMs = Date.now();
    this.counters.streamsOpened++;
    stream.on("data", (reply: unknown) => this.#receive(link, reply));
    stream.on("status", (s: grpc.StatusObject) => {
      if (link.stream === stream)
        this.#broken(link, `stream ended: ${grpc.status[s.code]} ${s.details}`, true);
    });
    // The status above says what happened; this keeps an 'error' event from throwing.
    stream.on("error", () => {});
  }

  #receive(link: Link, reply: unknown): void {
    const id = frameRequestId(reply);
    const frame = id === null ? undefined : link.inflight.get(id);
    if (frame === undefined) {
      // An answer to a frame that timed out, or one never sent: nothing waits for it.
      this.counters.repliesInvalid++;
      return;
    }
    this.counters.repliesReceived++;
    let fault: string | undefined;
    try {
      const part = decodeReplyPart(reply, frame.items.length, frame.got.length);
      if ("refused" in part) {
        fault = `peer ${link.id} refused a frame: ${part.refused.message}`;
      } else {
        frame.got.push(...part.results);
        frame.gotBytes += part.results.reduce((n, r) => n + resultBytes(r), 0);
        if (frame.gotBytes > this.#opts.replyBytesMax)
          fault = `peer ${link.id} answered more than ${this.#opts.replyBytesMax} bytes`;
        else if (part.more) return;
      }
    } catch (e) {
      if (!(e instanceof ReplicaWireInvalid)) throw e;
      this.counters.repliesInvalid++;
      fault = `peer ${link.id} answered a malformed reply: ${e.message}`;
    }
    this.#forget(link, frame);
    clearTimeout(frame.timer);
    if (fault === undefined) frame.resolve(frame.got);
    else frame.reject(unavailable(fault));
    this.#pump(link);
  }

  /**
   * The stream is gone: every frame waiting or in flight fails UNAVAILABLE now. With `backoff`, new
   * sends fail at once until the backoff passes (a stream that lived a while starts the backoff over).
   */
  #broken(link: Link, why: string, backoff: boolean): void {
    link.generation++;
    link.connecting = false;
    const stream = link.stream;
    link.stream = undefined;
    link.blocked = false;
    if (stream !== undefined) {
      this.counters.streamsBroken++;
      stream.cancel();
    }
    const failed = [...link.inflight.values(), ...link.queue];
    link.inflight.clear();
    link.inflightBytes = 0;
    link.queue = [];
    link.queuedBytes = 0;
    for (const f of failed) {
      clearTimeout(f.timer);
      this.counters.framesFailedUnavailable++;
      f.reject(unavailable(`peer ${link.id}: ${why}`));
    }
    if (!backoff || this.#closed) return;
    const lived = stream !== undefined ? Date.now() - link.openedAtMs : 0;
    link.backoffMs =
      lived > 2_000
        ? this.#opts.reconnectMinMs
        : Math.min(this.#opts.reconnectMaxMs, Math.max(this.#opts.reconnectMinMs, link.backoffMs * 2));
    const delay = link.backoffMs / 2 + Math.random() * (link.backoffMs / 2);
    link.retryAtMs = Date.now() + delay;
    if (failed.length > 0 || stream !== undefined)
      this.#opts.log?.(
        `replication link: stream to ${link.id} broke (${why}); retry after ${Math.round(delay)} ms`,
      );
  }

  #client(link: Link): grpc.Client {
    if (link.client !== undefined) return link.client;
    const { tls } = this.#opts;
    const credentials = pinnedPeerCredentials(tls, link.id);
    const Service = loadReplicationService();
    const dial = peerDial(this.#opts.dialOverrides, link.id, link.address);
    link.client = new Service(dial.target, credentials, {
      ...peerGrpcOptions(this.#opts.messageBytesMax),
      "grpc.max_receive_message_length": this.#opts.replyBytesMax,
      ...dial.channelOptions,
    });
    return link.client;
  }
}

function resultBytes(r: ReplicaItemResult): number {
  if (!r.ok) return 16 + r.message.length;
  switch (r.kind) {
    case "put":
      return 16;
    case "get":
      return 16 + (r.record?.byteLength ?? 0);
    case "digest":
      return 16 + r.digest.byteLength;
    case "pull":
      return r.records.reduce((n, x) => n + 16 + x.byteLength, 16);
  }
}
