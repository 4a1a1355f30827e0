/**
 * PeerTransport over gRPC (lockbox.v1.PeerService.Raft, proto/lockbox/v1/peer.proto).
 *
 * Sending: one client stream per destination peer, opened lazily and kept open; each flush writes the
 * queued messages for that peer as RaftRequest messages. The per-peer queue is bounded (messages and
 * bytes) and drops the OLDEST messages when full: raft retransmits, and the newest messages (latest
 * term, latest commit) are the useful ones. A stream is opened only once the channel is connected; a
 * broken one is reopened with capped exponential backoff. What was queued meanwhile is sent then, what
 * was in flight is lost (raft tolerates loss).
 *
 * Receiving: handlers for the gRPC server; every message is validated (raft-wire-codec.ts) and a bad one
 * is dropped with a (rate-limited) log line. Nothing a peer sends can crash the process.
 *
 * SECURITY: for now peers talk plaintext h2c, and the servers listen on 127.0.0.1 only. The `from` of a
 * batch is the sender's claim, checked only for consistency. mTLS between peers, with certificates issued
 * at the attested join (DESIGN.md §5), replaces this, and `from` will be bound to the client certificate.
 */
import * as grpc from "@grpc/grpc-js";
import type { PeerTransport } from "../../cluster/raft/driver/peer-transport.js";
import type { Message, NodeId } from "../../cluster/raft/core/types.js";
import { isNodeId } from "../../cluster/node-id.js";
import { loadPeerProto } from "./peer-proto.js";
import { decodeMessage, encodeMessage, WireMessageInvalid, type WireBatch } from "./raft-wire-codec.js";

export interface GrpcPeerTransportOptions {
  /** This node's raft id (the `from` of every batch it sends). */
  id: NodeId;
  /** Known peers: id -> "host:port". */
  peers?: ReadonlyMap<NodeId, string>;
  /** Per-peer queue bound, in messages. */
  queueMessagesMax?: number;
  /** Per-peer queue bound, in payload bytes (entry data and snapshot data). */
  queueBytesMax?: number;
  /** Messages written per RaftRequest at most. */
  batchMessagesMax?: number;
  /** Messages accepted per received RaftRequest at most. */
  receiveBatchMessagesMax?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** How long one connection attempt may take before it counts as failed (then backoff). */
  connectTimeoutMs?: number;
  /** Largest gRPC message sent or received (a batch with a snapshot must fit). */
  grpcMessageBytesMax?: number;
  log?: (line: string) => void;
}

const DEFAULTS = {
  queueMessagesMax: 4096,
  queueBytesMax: 64 * 1024 * 1024,
  batchMessagesMax: 256,
  receiveBatchMessagesMax: 4096,
  reconnectMinMs: 50,
  reconnectMaxMs: 1000,
  connectTimeoutMs: 1000,
  grpcMessageBytesMax: 128 * 1024 * 1024,
};

/** gRPC channel/server options shared by both ends of a peer link. */
export function peerGrpcOptions(grpcMessageBytesMax = DEFAULTS.grpcMessageBytesMax): grpc.ChannelOptions {
  return {
    "grpc.max_receive_message_length": grpcMessageBytesMax,
    "grpc.max_send_message_length": grpcMessageBytesMax,
    // Notice a silently dead peer within seconds, not at the OS TCP timeout.
    "grpc.keepalive_time_ms": 5_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.min_ping_interval_without_data_ms": 1_000,
    // grpc-js backs off up to 120 s between connection attempts by default; a restarted peer must be
    // reached within a second.
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1_000,
  };
}

interface Link {
  address: string;
  client: grpc.Client | undefined;
  stream: grpc.ClientWritableStream<WireBatch> | undefined;
  queue: Message[];
  queueBytes: number;
  blocked: boolean;
  backoffMs: number;
  reconnectTimer: NodeJS.Timeout | undefined;
  openedAt: number;
  dropped: number;
  /** Waiting for the channel to connect before opening the stream. */
  connecting: boolean;
  /** Bumped on disconnect, so callbacks of an abandoned connection attempt do nothing. */
  generation: number;
}

export class GrpcPeerTransport implements PeerTransport {
  readonly id: NodeId;
  readonly #opts: GrpcPeerTransportOptions & typeof DEFAULTS;
  readonly #links = new Map<NodeId, Link>();
  #onMessage: ((m: Message) => void) | undefined;
  #closed = false;
  readonly #logLimiter = new LogLimiter();

  constructor(options: GrpcPeerTransportOptions) {
    this.#opts = { ...DEFAULTS, ...options };
    this.id = options.id;
    for (const [id, address] of options.peers ?? []) if (id !== this.id) this.setPeerAddress(id, address);
  }

  start(onMessage: (message: Message) => void): void {
    if (this.#onMessage !== undefined) throw new Error("transport already started");
    this.#onMessage = onMessage;
  }

  setPeerAddress(id: NodeId, address: string): void {
    if (id === this.id || this.#closed) return;
    const link = this.#links.get(id);
    if (link !== undefined) {
      if (link.address === address) return;
      this.#disconnect(link);
      link.address = address;
      return;
    }
    this.#links.set(id, {
      address,
      client: undefined,
      stream: undefined,
      queue: [],
      queueBytes: 0,
      blocked: false,
      backoffMs: 0,
      reconnectTimer: undefined,
      openedAt: 0,
      dropped: 0,
      connecting: false,
      generation: 0,
    });
  }

  removePeer(id: NodeId): void {
    const link = this.#links.get(id);
    if (link === undefined) return;
    this.#disconnect(link);
    this.#links.delete(id);
  }

  /** For tests and status: what is queued for and was dropped on the way to `id`. */
  linkStats(id: NodeId): { queued: number; dropped: number; connected: boolean } | undefined {
    const link = this.#links.get(id);
    if (link === undefined) return undefined;
    return { queued: link.queue.length, dropped: link.dropped, connected: link.stream !== undefined };
  }

  peerAddresses(): Map<NodeId, string> {
    return new Map([...this.#links].map(([id, l]) => [id, l.address]));
  }

  send(messages: Message[]): void {
    if (this.#closed) return;
    const touched = new Set<Link>();
    for (const m of messages) {
      const link = this.#links.get(m.to);
      if (link === undefined) {
        this.#log(`no-address:${m.to}`, `raft transport: no address for peer ${m.to}; message dropped`);
        continue;
      }
      link.queue.push(m);
      link.queueBytes += payloadBytes(m);
      touched.add(link);
    }
    for (const link of touched) {
      this.#trim(link);
      this.#flush(link);
    }
  }

  /** Handlers to add to a grpc.Server: `server.addService(PeerService.service, transport.serviceHandlers())`. */
  serviceHandlers(): grpc.UntypedServiceImplementation {
    return {
      Raft: (call: grpc.ServerReadableStream<unknown, object>, callback: grpc.sendUnaryData<object>) => {
        let done = false;
        const finish = (err: grpc.ServiceError | null): void => {
          if (done) return;
          done = true;
          callback(err, err === null ? {} : undefined);
        };
        call.on("data", (batch: unknown) => this.#receiveBatch(batch));
        call.on("end", () => finish(null));
        // A reset or a deserialisation failure of the stream: nothing to do but forget it.
        call.on("error", (e) => {
          this.#log("stream-error", `raft transport: inbound stream failed: ${(e as Error).message}`);
          done = true;
        });
      },
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const link of this.#links.values()) this.#disconnect(link);
    this.#links.clear();
  }

  // ---- receiving ----------------------------------------------------------------------------------

  #receiveBatch(batch: unknown): void {
    const b = batch as Partial<WireBatch> | null;
    const from = b?.from;
    // `from` goes into log lines below, so it is checked like any node id (bounded, no control characters).
    if (!isNodeId(from) || !Array.isArray(b?.messages)) {
      this.#log("bad-batch", "raft transport: dropped a batch without a valid sender or messages");
      return;
    }
    if (b.messages.length > this.#opts.receiveBatchMessagesMax) {
      this.#log("big-batch", `raft transport: dropped a batch of ${b.messages.length} messages from ${from}`);
      return;
    }
    for (const w of b.messages) {
      let m: Message;
      try {
        m = decodeMessage(w);
      } catch (e) {
        if (!(e instanceof WireMessageInvalid)) throw e;
        // The limiter's kind leaves out list positions, or a flood of distinct ones would grow its map.
        const kind = `invalid:${e.field.replace(/\[\d+\]/g, "[]")}`;
        this.#log(kind, `raft transport: dropped invalid message from ${from}: ${e.message}`);
        continue;
      }
      if (m.from !== from) {
        this.#log(
          "from-mismatch",
          `raft transport: dropped message claiming from ${m.from} in a batch from ${from}`,
        );
        continue;
      }
      if (m.to !== this.id) {
        this.#log("to-mismatch", `raft transport: dropped message for ${m.to} (this is ${this.id})`);
        continue;
      }
      this.#onMessage?.(m);
    }
  }

  // ---- sending ------------------------------------------------------------------------------------

  /** Drops the oldest queued messages until the queue fits its bounds (always keeps the newest one). */
  #trim(link: Link): void {
    let drop = 0;
    while (
      link.queue.length - drop > 1 &&
      (link.queue.length - drop > this.#opts.queueMessagesMax || link.queueBytes > this.#opts.queueBytesMax)
    ) {
      link.queueBytes -= payloadBytes(link.queue[drop]!);
      drop++;
    }
    if (drop > 0) {
      link.queue.splice(0, drop);
      link.dropped += drop;
    }
  }

  #flush(link: Link): void {
    if (this.#closed || link.blocked || link.queue.length === 0) return;
    if (link.stream === undefined) {
      if (link.reconnectTimer === undefined && !link.connecting) this.#open(link);
      if (link.stream === undefined) return;
    }
    const stream = link.stream;
    while (link.queue.length > 0 && !link.blocked) {
      const chunk = link.queue.splice(0, this.#opts.batchMessagesMax);
      for (const m of chunk) link.queueBytes -= payloadBytes(m);
      const ok = stream.write({ from: this.id, messages: chunk.map(encodeMessage) });
      if (!ok) {
        link.blocked = true;
        stream.once("drain", () => {
          link.blocked = false;
          this.#flush(link);
        });
      }
    }
  }

  /**
   * Opens the stream once the channel is connected. Until then messages wait in the bounded queue
   * rather than vanishing into a call that is bound to fail, so a peer that comes back gets the newest.
   */
  #open(link: Link): void {
    const { PeerService } = loadPeerProto();
    link.client ??= new PeerService(
      link.address,
      grpc.credentials.createInsecure(),
      peerGrpcOptions(this.#opts.grpcMessageBytesMax),
    );
    if (link.client.getChannel().getConnectivityState(true) !== grpc.connectivityState.READY) {
      const generation = link.generation;
      link.connecting = true;
      link.client.waitForReady(Date.now() + this.#opts.connectTimeoutMs, (err) => {
        if (link.generation !== generation || this.#closed) return;
        link.connecting = false;
        if (err) this.#broken(link, `not reachable: ${err.message}`, 0);
        else this.#flush(link);
      });
      return;
    }
    const client = link.client as unknown as {
      Raft(cb: (err: grpc.ServiceError | null) => void): grpc.ClientWritableStream<WireBatch>;
    };
    const stream = client.Raft((err) => {
      if (link.stream === stream)
        this.#broken(link, err?.message ?? "stream ended", Date.now() - link.openedAt);
    });
    // Errors also arrive through the callback above; this listener keeps an 'error' event from throwing.
    stream.on("error", () => {});
    link.stream = stream;
    link.blocked = false;
    link.openedAt = Date.now();
  }

  /** `livedMs`: how long the stream was open (0 when it never opened). */
  #broken(link: Link, why: string, livedMs: number): void {
    link.stream = undefined;
    link.blocked = false;
    if (this.#closed || link.reconnectTimer !== undefined) return;
    // A stream that lived a while was a working connection: start the backoff over.
    link.backoffMs =
      livedMs > 2_000
        ? this.#opts.reconnectMinMs
        : Math.min(this.#opts.reconnectMaxMs, Math.max(this.#opts.reconnectMinMs, link.backoffMs * 2));
    const delay = link.backoffMs / 2 + Math.random() * (link.backoffMs / 2);
    this.#log(
      `broken:${link.address}`,
      `raft transport: stream to ${link.address} closed (${why}); retry in ${Math.round(delay)} ms`,
    );
    link.reconnectTimer = setTimeout(() => {
      link.reconnectTimer = undefined;
      this.#flush(link);
    }, delay);
    link.reconnectTimer.unref();
  }

  #disconnect(link: Link): void {
    link.generation++;
    link.connecting = false;
    if (link.reconnectTimer !== undefined) clearTimeout(link.reconnectTimer);
    link.reconnectTimer = undefined;
    const stream = link.stream;
    link.stream = undefined;
    stream?.end();
    link.client?.close();
    link.client = undefined;
  }

  #log(kind: string, line: string): void {
    if (this.#opts.log !== undefined && this.#logLimiter.allow(kind)) this.#opts.log(line);
  }
}

function payloadBytes(m: Message): number {
  let n = 64 + m.context.byteLength + (m.snapshot?.data.byteLength ?? 0);
  for (const e of m.entries) n += 32 + e.data.byteLength;
  return n;
}

/** At most `perWindow` log lines of one kind per window, so a flood of bad input cannot flood the log. */
class LogLimiter {
  readonly #counts = new Map<string, number>();
  #windowStart = 0;

  constructor(
    readonly perWindow = 5,
    readonly windowMs = 10_000,
  ) {}

  allow(kind: string): boolean {
    const now = Date.now();
    if (now - this.#windowStart > this.windowMs) {
      this.#counts.clear();
      this.#windowStart = now;
    }
    const n = (this.#counts.get(kind) ?? 0) + 1;
    this.#counts.set(kind, n);
    return n <= this.perWindow;
  }
}
