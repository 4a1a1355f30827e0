/**
 * PeerTransport over gRPC (lockbox.v1.PeerService, proto/lockbox/v1/peer.proto), behind mTLS.
 *
 * Sending: one client stream per destination peer, opened lazily and kept open; each flush writes the
 * queued messages for that peer as RaftRequest batches, each batch below `messageBytesMax` (the peer
 * server's request bound). The per-peer queue is bounded (messages and bytes) and drops the OLDEST
 * messages when full: raft retransmits, and the newest messages (latest term, latest commit) are the
 * useful ones. A stream is opened only once the channel is connected; a broken one is reopened with
 * capped exponential backoff. What was queued meanwhile is sent then, what was in flight is lost (raft
 * tolerates loss). InstallSnapshot messages go on their own call (Snapshot) in chunks of `chunkBytes`,
 * at most `chunksInFlightMax` unacknowledged, one transfer per peer at a time (snapshot-chunks.ts).
 *
 * Receiving: handlers for the peer's gRPC server. A call is accepted only from a peer certificate of the
 * cluster CA (PeerCertificateVerifier), and every batch, chunk and message must name that peer as its
 * sender; otherwise the call is refused before any message is read. Every message is validated
 * (raft-wire-codec.ts) and a bad one is dropped, counted, with a rate-limited log line. Nothing a peer
 * sends can crash the process or grow its memory beyond the bounds here.
 *
 * Whether the authenticated peer is a current, non-fenced member is the control state's to say
 * (issue 9), through `admitPeer`.
 */
import * as grpc from "@grpc/grpc-js";
import { X509Certificate } from "node:crypto";
import type { PeerCertificate } from "node:tls";
import type { PeerTransport, SnapshotOutcome } from "../../cluster/raft/driver/peer-transport.js";
import { MessageType, type Message, type NodeId } from "../../cluster/raft/core/types.js";
import { isNodeId } from "../../cluster/node-id.js";
import { isLockboxError } from "../errors.js";
import { peerDial, type PeerDialOverrides } from "../net/peer-dial.js";
import { PeerCertificateVerifier, peerIdOf, type PeerIdentity } from "../pki/peer-certificate-verifier.js";
import { pinnedPeerCredentials, type PeerTlsMaterial } from "../pki/pinned-peer-credentials.js";
import {
  peerRefusalCodeOf,
  peerRefusalStatus,
  refusalReason,
  type PeerRefusal,
  type PeerRefusalCode,
} from "../pki/peer-refusal.js";
import { loadPeerProto } from "./peer-proto.js";
import { decodeMessage, encodeMessage, WireMessageInvalid, type WireBatch } from "./raft-wire-codec.js";
import {
  SnapshotAssembly,
  SnapshotChunkRefused,
  snapshotChunks,
  type SnapshotRefusal,
  type WireSnapshotChunk,
} from "./snapshot-chunks.js";

/**
 * The largest gRPC message on a peer link, either way. It equals the peer server's request bound
 * (src/server/lockbox-server.ts REQUEST_BYTES_MAX), which the server applies to every service before it
 * knows who calls: raft batches and snapshot chunks are cut to fit it, so the key and admin services
 * never need a larger bound for raft's sake.
 */
export const PEER_MESSAGE_BYTES_MAX = 64 * 1024;

export type { PeerTlsMaterial };

export interface GrpcPeerTransportOptions {
  /** This node's raft id (the `from` of every batch it sends); its certificate must name it. */
  id: NodeId;
  tls: PeerTlsMaterial;
  /** Known peers: id -> "host:port". */
  peers?: ReadonlyMap<NodeId, string>;
  /** Peers dialled at another address than their member address (config.json `peerDialOverrides`). */
  dialOverrides?: PeerDialOverrides;
  /** Per-peer queue bound, in messages. */
  queueMessagesMax?: number;
  /** Per-peer queue bound, in payload bytes (entry data). */
  queueBytesMax?: number;
  /** Messages written per RaftRequest at most. */
  batchMessagesMax?: number;
  /** Messages accepted per received RaftRequest at most. */
  receiveBatchMessagesMax?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** How long one connection attempt may take before it counts as failed (then backoff). */
  connectTimeoutMs?: number;
  /** Largest gRPC message sent or received on a peer link. */
  messageBytesMax?: number;
  /** Image bytes per snapshot chunk (must fit, with its header, in messageBytesMax). */
  chunkBytes?: number;
  /** Snapshot chunks sent and not yet acknowledged, per transfer, at most. */
  chunksInFlightMax?: number;
  /** Largest snapshot image accepted from a peer. */
  snapshotBytesMax?: number;
  /** How long one snapshot transfer may take, on either end. */
  snapshotTimeoutMs?: number;
  /** Snapshot transfers being received at once at most (one per sender besides). */
  snapshotsReceivingMax?: number;
  /**
   * Whether an authenticated peer (its id and certificate serial) may call now: null admits it, a
   * string says why not (the call is refused PERMISSION_DENIED with it). The control state plugs
   * membership and revocation in here (a current, non-fenced member whose certificate is not revoked,
   * issue 9); by default every peer certificate of the cluster CA is admitted.
   */
  admitPeer?: (peer: PeerIdentity) => string | PeerRefusal | null;
  /**
   * Another peer refused this one's call with a structured refusal (pki/peer-refusal.ts): how a fenced
   * peer learns that it is fenced while nobody sends it the entry that says so.
   */
  onRefusedByPeer?: (peer: NodeId, code: PeerRefusalCode, details: string) => void;
  log?: (line: string) => void;
}

/** Longest one snapshot transfer may take, on either end, unless the options say otherwise. */
export const SNAPSHOT_TIMEOUT_MS_DEFAULT = 120_000;

const DEFAULTS = {
  queueMessagesMax: 4096,
  queueBytesMax: 64 * 1024 * 1024,
  batchMessagesMax: 256,
  receiveBatchMessagesMax: 4096,
  reconnectMinMs: 50,
  reconnectMaxMs: 1000,
  connectTimeoutMs: 1000,
  messageBytesMax: PEER_MESSAGE_BYTES_MAX,
  chunkBytes: 32 * 1024,
  chunksInFlightMax: 16,
  // A control state of many thousand identities and KEKs is a few tens of MB; with snapshotsReceivingMax
  // this bounds what senders can make a receiver hold at once (256 MiB).
  snapshotBytesMax: 64 * 1024 * 1024,
  snapshotTimeoutMs: SNAPSHOT_TIMEOUT_MS_DEFAULT,
  snapshotsReceivingMax: 4,
};

/** What the transport refused or dropped, and what it moved; counters only grow. */
export interface PeerTransportCounters {
  /** Calls refused: no peer certificate of the cluster CA. */
  refusedUnauthenticated: number;
  /** Calls refused: a batch or chunk named another sender than the certificate's peer. */
  refusedSenderMismatch: number;
  /** Calls refused: the authenticated peer was not admitted (admitPeer). */
  refusedNotAdmitted: number;
  /** Received messages dropped by the codec (malformed) or for naming another sender or receiver. */
  receivedInvalid: number;
  /** Messages not sent: one message alone exceeds messageBytesMax. */
  sendOversized: number;
  snapshotsSent: number;
  snapshotChunksSent: number;
  /** Snapshot messages not sent because a transfer to that peer was still under way (raft resends). */
  snapshotsSkippedBusy: number;
  snapshotsSendFailed: number;
  snapshotsReceived: number;
  snapshotChunksReceived: number;
  /** Snapshot transfers refused on receipt, by the check that refused them. */
  snapshotsRefused: Partial<Record<SnapshotRefusal | "busy", number>>;
}

/** gRPC channel/server options shared by both ends of a peer link. */
export function peerGrpcOptions(messageBytesMax = PEER_MESSAGE_BYTES_MAX): grpc.ChannelOptions {
  return {
    "grpc.max_receive_message_length": messageBytesMax,
    "grpc.max_send_message_length": messageBytesMax,
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
  id: NodeId;
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
  /** The snapshot transfer under way to this peer, if any. */
  snapshot: grpc.ClientDuplexStream<WireSnapshotChunk, { received_bytes: number }> | undefined;
}

type SnapshotClient = {
  Snapshot(options: grpc.CallOptions): grpc.ClientDuplexStream<WireSnapshotChunk, { received_bytes: number }>;
};

export class GrpcPeerTransport implements PeerTransport {
  readonly id: NodeId;
  readonly #opts: GrpcPeerTransportOptions & typeof DEFAULTS;
  readonly #links = new Map<NodeId, Link>();
  readonly #verifier: PeerCertificateVerifier;
  /** Snapshot transfers being received, by sender. */
  readonly #receiving = new Map<NodeId, { abort(): void }>();
  #onMessage: ((m: Message) => void) | undefined;
  #onSnapshotSent: ((to: NodeId, outcome: SnapshotOutcome) => void) | undefined;
  #closed = false;
  readonly #logLimiter = new LogLimiter();
  readonly #counters: PeerTransportCounters = {
    refusedUnauthenticated: 0,
    refusedSenderMismatch: 0,
    refusedNotAdmitted: 0,
    receivedInvalid: 0,
    sendOversized: 0,
    snapshotsSent: 0,
    snapshotChunksSent: 0,
    snapshotsSkippedBusy: 0,
    snapshotsSendFailed: 0,
    snapshotsReceived: 0,
    snapshotChunksReceived: 0,
    snapshotsRefused: {},
  };

  constructor(options: GrpcPeerTransportOptions) {
    this.#opts = { ...DEFAULTS, ...options };
    this.id = options.id;
    const own = peerIdOf(new X509Certificate(options.tls.certificatePem));
    if (own !== this.id) {
      throw new RangeError(`this peer's certificate names ${own}, not its raft id ${this.id}`);
    }
    // The first chunk carries its data and the header (a raft message without data, whose configuration
    // of up to MEMBERS_MAX ids takes up to ~17 KiB): half of a message is left for the header.
    if (this.#opts.chunkBytes * 2 > this.#opts.messageBytesMax) {
      throw new RangeError("chunkBytes must be at most half of messageBytesMax");
    }
    this.#verifier = new PeerCertificateVerifier(options.tls.caCertificatePem);
    for (const [id, address] of options.peers ?? []) if (id !== this.id) this.setPeerAddress(id, address);
  }

  start(
    onMessage: (message: Message) => void,
    onSnapshotSent?: (to: NodeId, outcome: SnapshotOutcome) => void,
  ): void {
    if (this.#onMessage !== undefined) throw new Error("transport already started");
    this.#onMessage = onMessage;
    this.#onSnapshotSent = onSnapshotSent;
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
      id,
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
      snapshot: undefined,
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

  /** For tests and status: what was refused, dropped and moved since start. */
  counters(): PeerTransportCounters {
    return { ...this.#counters, snapshotsRefused: { ...this.#counters.snapshotsRefused } };
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
        if (m.type === MessageType.Snapshot) this.#onSnapshotSent?.(m.to, "failed");
        continue;
      }
      if (m.type === MessageType.Snapshot && m.snapshot !== null) {
        this.#sendSnapshot(link, m);
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

  /**
   * Handlers to add to the peer's gRPC server, whose TLS requests client certificates:
   * `server.addService(loadPeerProto().PeerService.service, transport.serviceHandlers())`.
   */
  serviceHandlers(): grpc.UntypedServiceImplementation {
    return {
      Raft: (call: grpc.ServerReadableStream<unknown, object>, callback: grpc.sendUnaryData<object>) => {
        let done = false;
        const finish = (err: Partial<grpc.StatusObject> | null): void => {
          if (done) return;
          done = true;
          callback(err, err === null ? {} : undefined);
        };
        const peer = this.#authenticate(call);
        if (typeof peer !== "string") {
          finish(peer);
          return;
        }
        call.on("data", (batch: unknown) => {
          if (done) return;
          const refusal = this.#receiveBatch(peer, batch);
          if (refusal !== null) finish(refusal);
        });
        call.on("end", () => finish(null));
        // A reset or a deserialisation failure of the stream: nothing to do but forget it.
        call.on("error", (e) => {
          this.#log("stream-error", `raft transport: inbound stream failed: ${(e as Error).message}`);
          done = true;
        });
      },
      Snapshot: (call: grpc.ServerDuplexStream<unknown, { received_bytes: number }>) => {
        const peer = this.#authenticate(call);
        if (typeof peer !== "string") {
          call.emit("error", peer);
          return;
        }
        this.#receiveSnapshot(peer, call);
      },
    };
  }

  /**
   * The peer id a call on another PeerService method (the control plane's Propose) proves, with the same
   * checks and admission as Raft and Snapshot; or the status that refuses it.
   */
  authenticateCall(call: {
    getAuthContext(): { sslPeerCertificate?: PeerCertificate } | null;
  }): NodeId | Partial<grpc.StatusObject> {
    return this.#authenticate(call);
  }

  /** The PeerService client of the link to `id` (the same TLS channel raft uses), if its address is known. */
  peerClient(id: NodeId): grpc.Client | undefined {
    const link = this.#links.get(id);
    return link === undefined || this.#closed ? undefined : this.#client(link);
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const link of this.#links.values()) this.#disconnect(link);
    this.#links.clear();
    for (const r of [...this.#receiving.values()]) r.abort();
  }

  // ---- receiving ----------------------------------------------------------------------------------

  /** The peer id the call's certificate proves, if admitted; else the status that refuses the call. */
  #authenticate(call: {
    getAuthContext(): { sslPeerCertificate?: PeerCertificate } | null;
  }): NodeId | Partial<grpc.StatusObject> {
    let identity: PeerIdentity;
    try {
      identity = this.#verifier.verify(call.getAuthContext()?.sslPeerCertificate?.raw);
    } catch (e) {
      if (!isLockboxError(e, "UNAUTHENTICATED")) throw e;
      this.#counters.refusedUnauthenticated++;
      this.#log("unauthenticated", `raft transport: refused a peer call: ${e.message}`);
      return { code: grpc.status.UNAUTHENTICATED, details: `peer call refused: ${e.message}` };
    }
    const peer = identity.peerId;
    const refusal = this.#opts.admitPeer?.(identity) ?? null;
    if (refusal !== null) {
      this.#counters.refusedNotAdmitted++;
      this.#log(
        `not-admitted:${peer}`,
        `raft transport: refused a call from peer ${peer}: ${refusalReason(refusal)}`,
      );
      return peerRefusalStatus(peer, refusal);
    }
    return peer;
  }

  /** Hands the batch's good messages on; returns a status that ends the call if the batch is refused. */
  #receiveBatch(peer: NodeId, batch: unknown): Partial<grpc.StatusObject> | null {
    const b = batch as Partial<WireBatch> | null;
    const from = b?.from;
    // `from` goes into log lines below, so it is checked like any node id (bounded, no control characters).
    if (!isNodeId(from) || !Array.isArray(b?.messages)) {
      this.#counters.receivedInvalid++;
      this.#log("bad-batch", "raft transport: dropped a batch without a valid sender or messages");
      return null;
    }
    if (from !== peer) return this.#senderMismatch(peer, from);
    if (b.messages.length > this.#opts.receiveBatchMessagesMax) {
      this.#counters.receivedInvalid++;
      this.#log("big-batch", `raft transport: dropped a batch of ${b.messages.length} messages from ${from}`);
      return null;
    }
    for (const w of b.messages) {
      let m: Message;
      try {
        m = decodeMessage(w);
      } catch (e) {
        if (!(e instanceof WireMessageInvalid)) throw e;
        this.#counters.receivedInvalid++;
        // The limiter's kind leaves out list positions, or a flood of distinct ones would grow its map.
        const kind = `invalid:${e.field.replace(/\[\d+\]/g, "[]")}`;
        this.#log(kind, `raft transport: dropped invalid message from ${from}: ${e.message}`);
        continue;
      }
      if (m.from !== from) {
        this.#counters.receivedInvalid++;
        this.#log(
          "from-mismatch",
          `raft transport: dropped message claiming from ${m.from} in a batch from ${from}`,
        );
        continue;
      }
      if (m.to !== this.id) {
        this.#counters.receivedInvalid++;
        this.#log("to-mismatch", `raft transport: dropped message for ${m.to} (this is ${this.id})`);
        continue;
      }
      this.#onMessage?.(m);
    }
    return null;
  }

  #senderMismatch(peer: NodeId, claimed: string): Partial<grpc.StatusObject> {
    this.#counters.refusedSenderMismatch++;
    this.#log(
      `sender-mismatch:${peer}`,
      `raft transport: refused a call from peer ${peer} that names ${JSON.stringify(claimed)} as sender`,
    );
    return {
      code: grpc.status.PERMISSION_DENIED,
      details: `peer ${peer} may send only as itself`,
    };
  }

  #receiveSnapshot(peer: NodeId, call: grpc.ServerDuplexStream<unknown, { received_bytes: number }>): void {
    let assembly: SnapshotAssembly | undefined;
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const end = (err: Partial<grpc.StatusObject> | null): void => {
      if (done) return;
      done = true;
      if (timer !== undefined) clearTimeout(timer);
      if (this.#receiving.get(peer) === entry) this.#receiving.delete(peer);
      if (err === null) call.end();
      else call.emit("error", err);
    };
    const refuse = (e: SnapshotChunkRefused | "busy", details: string): void => {
      const refusal = e === "busy" ? "busy" : e.refusal;
      const counts = this.#counters.snapshotsRefused;
      counts[refusal] = (counts[refusal] ?? 0) + 1;
      this.#log(`snapshot-refused:${refusal}`, `raft transport: refused a snapshot from ${peer}: ${details}`);
      end({ code: refusalStatus(refusal), details });
    };
    const entry = { abort: () => end({ code: grpc.status.ABORTED, details: "superseded or closing" }) };
    // A sender starts a new transfer only after it gave up on its last one: the newer one wins.
    this.#receiving.get(peer)?.abort();
    if (this.#receiving.size >= this.#opts.snapshotsReceivingMax) {
      refuse("busy", `${this.#receiving.size} snapshot transfers under way already`);
      return;
    }
    this.#receiving.set(peer, entry);
    timer = setTimeout(() => {
      const e = new SnapshotChunkRefused("timeout", `not complete within ${this.#opts.snapshotTimeoutMs} ms`);
      refuse(e, e.message);
    }, this.#opts.snapshotTimeoutMs);
    timer.unref();
    const limits = { chunkBytesMax: this.#opts.chunkBytes, snapshotBytesMax: this.#opts.snapshotBytesMax };

    call.on("data", (chunk: unknown) => {
      if (done) return;
      const claimed = (chunk as { from?: unknown } | null)?.from;
      if (typeof claimed === "string" && claimed !== peer) {
        end(this.#senderMismatch(peer, claimed));
        return;
      }
      let m: Message | undefined;
      try {
        if (assembly === undefined) assembly = new SnapshotAssembly(chunk, limits);
        else assembly.add(chunk);
        this.#counters.snapshotChunksReceived++;
        if (assembly.complete) m = assembly.message();
      } catch (e) {
        if (!(e instanceof SnapshotChunkRefused)) throw e;
        refuse(e, e.message);
        return;
      }
      call.write({ received_bytes: assembly.receivedBytes });
      if (m === undefined) return;
      if (m.to !== this.id) {
        this.#counters.receivedInvalid++;
        end({ code: grpc.status.INVALID_ARGUMENT, details: `snapshot for ${m.to}, this is ${this.id}` });
        return;
      }
      this.#counters.snapshotsReceived++;
      end(null);
      this.#onMessage?.(m);
    });
    call.on("end", () => {
      if (!done) {
        const e = new SnapshotChunkRefused(
          "past-end",
          "the sender ended the call before the image was complete",
        );
        refuse(e, e.message);
      }
    });
    call.on("error", () => end(null));
    call.on("cancelled", () => end(null));
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
      const batch = this.#nextBatch(link);
      if (batch.length === 0) continue;
      const ok = stream.write({ from: this.id, messages: batch });
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
   * Takes the next batch off the queue: at most batchMessagesMax messages whose encoding fits in
   * messageBytesMax. A message that alone does not fit is dropped and counted (the core's batch bounds
   * are set below messageBytesMax, so this is a configuration error, not a runtime state).
   */
  #nextBatch(link: Link): WireBatch["messages"] {
    const budget = this.#opts.messageBytesMax - 1024;
    const out: WireBatch["messages"] = [];
    let bytes = 0;
    while (link.queue.length > 0 && out.length < this.#opts.batchMessagesMax) {
      const m = link.queue[0]!;
      const w = encodeMessage(m);
      const size = encodedMessageBytes(w);
      if (size > budget) {
        link.queue.shift();
        link.queueBytes -= payloadBytes(m);
        this.#counters.sendOversized++;
        this.#log(
          "oversized",
          `raft transport: dropped a message of ${size} bytes to ${m.to} (bound ${budget})`,
        );
        continue;
      }
      if (bytes + size > budget) break;
      link.queue.shift();
      link.queueBytes -= payloadBytes(m);
      out.push(w);
      bytes += size;
    }
    return out;
  }

  /**
   * Opens the stream once the channel is connected. Until then messages wait in the bounded queue
   * rather than vanishing into a call that is bound to fail, so a peer that comes back gets the newest.
   */
  #open(link: Link): void {
    const client = this.#client(link);
    if (client.getChannel().getConnectivityState(true) !== grpc.connectivityState.READY) {
      const generation = link.generation;
      link.connecting = true;
      client.waitForReady(Date.now() + this.#opts.connectTimeoutMs, (err) => {
        if (link.generation !== generation || this.#closed) return;
        link.connecting = false;
        if (err) this.#broken(link, `not reachable: ${err.message}`, 0);
        else this.#flush(link);
      });
      return;
    }
    const raft = client as unknown as {
      Raft(cb: (err: grpc.ServiceError | null) => void): grpc.ClientWritableStream<WireBatch>;
    };
    const stream = raft.Raft((err) => {
      this.#noteRefusal(link, err);
      if (link.stream === stream)
        this.#broken(link, err?.message ?? "stream ended", Date.now() - link.openedAt);
    });
    // Errors also arrive through the callback above; this listener keeps an 'error' event from throwing.
    stream.on("error", () => {});
    link.stream = stream;
    link.blocked = false;
    link.openedAt = Date.now();
  }

  /** The link's client: TLS with this peer's certificate, accepting only the certificate of `link.id`. */
  #client(link: Link): grpc.Client {
    if (link.client !== undefined) return link.client;
    const { tls } = this.#opts;
    const credentials = pinnedPeerCredentials(tls, link.id);
    const { PeerService } = loadPeerProto();
    const dial = peerDial(this.#opts.dialOverrides, link.id, link.address);
    link.client = new PeerService(dial.target, credentials, {
      ...peerGrpcOptions(this.#opts.messageBytesMax),
      ...dial.channelOptions,
    });
    return link.client;
  }

  /**
   * Sends InstallSnapshot `m` in chunks on its own call, keeping at most chunksInFlightMax chunks
   * unacknowledged. One transfer per peer: while one is under way a new snapshot message is skipped
   * (the leader sends it again after its snapshot timeout if the follower still needs it).
   */
  #sendSnapshot(link: Link, m: Message): void {
    if (link.snapshot !== undefined) {
      this.#counters.snapshotsSkippedBusy++;
      return;
    }
    const chunks = snapshotChunks(this.id, m, this.#opts.chunkBytes);
    const ends = chunks.map((c) => c.offset + c.data.byteLength);
    const call = (this.#client(link) as unknown as SnapshotClient).Snapshot({
      deadline: Date.now() + this.#opts.snapshotTimeoutMs,
    });
    link.snapshot = call;
    let next = 0;
    let acked = 0;
    let finished = false;
    const finish = (why: string | null): void => {
      if (finished) return;
      finished = true;
      if (link.snapshot === call) link.snapshot = undefined;
      if (why === null) {
        this.#counters.snapshotsSent++;
        this.#opts.log?.(
          `raft transport: sent snapshot ${m.snapshot!.metadata.index} to ${link.id} ` +
            `(${m.snapshot!.data.byteLength} bytes, ${chunks.length} chunks)`,
        );
      } else {
        this.#counters.snapshotsSendFailed++;
        this.#log(`snapshot-failed:${link.id}`, `raft transport: snapshot to ${link.id} failed: ${why}`);
        call.cancel();
      }
      // The leader probes this follower again now rather than after its snapshot timeout.
      this.#onSnapshotSent?.(link.id, why === null ? "delivered" : "failed");
    };
    const pump = (): void => {
      while (!finished && next < chunks.length && next - acked < this.#opts.chunksInFlightMax) {
        call.write(chunks[next]!);
        this.#counters.snapshotChunksSent++;
        next++;
      }
      if (next === chunks.length && acked === chunks.length) call.end();
    };
    call.on("data", (ack: { received_bytes?: unknown }) => {
      const received = ack?.received_bytes;
      if (typeof received !== "number") return;
      while (acked < chunks.length && ends[acked]! <= received) acked++;
      pump();
    });
    call.on("status", (s: grpc.StatusObject) => {
      this.#noteRefusal(link, s);
      if (s.code === grpc.status.OK && acked === chunks.length) finish(null);
      else finish(`${grpc.status[s.code]}: ${s.details}`);
    });
    call.on("error", () => {}); // the status above says what happened
    pump();
  }

  #noteRefusal(link: Link, status: grpc.ServiceError | grpc.StatusObject | null): void {
    const code = peerRefusalCodeOf(status);
    if (code !== undefined) this.#opts.onRefusedByPeer?.(link.id, code, status?.details ?? "");
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
    link.snapshot?.cancel();
    link.snapshot = undefined;
    link.client?.close();
    link.client = undefined;
  }

  #log(kind: string, line: string): void {
    if (this.#opts.log !== undefined && this.#logLimiter.allow(kind)) this.#opts.log(line);
  }
}

function refusalStatus(refusal: SnapshotRefusal | "busy"): grpc.status {
  switch (refusal) {
    case "too-large":
    case "oversized":
    case "busy":
      return grpc.status.RESOURCE_EXHAUSTED;
    case "timeout":
      return grpc.status.DEADLINE_EXCEEDED;
    case "digest":
      return grpc.status.DATA_LOSS;
    default:
      return grpc.status.INVALID_ARGUMENT;
  }
}

function payloadBytes(m: Message): number {
  let n = 64 + m.context.byteLength + (m.snapshot?.data.byteLength ?? 0);
  for (const e of m.entries) n += 32 + e.data.byteLength;
  return n;
}

/** The exact protobuf size of one wire message inside a RaftRequest. */
function encodedMessageBytes(w: WireBatch["messages"][number]): number {
  const method = (loadPeerProto().PeerService.service as grpc.ServiceDefinition).Raft!;
  return method.requestSerialize({ from: "", messages: [w] }).byteLength;
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
