/**
 * A raft snapshot in chunks (lockbox.v1.PeerService.Snapshot, proto/lockbox/v1/peer.proto): the
 * sender's split and the receiver's reassembly. The receiver is the trust boundary: every chunk is
 * checked against what the transfer declared before any byte of it is kept, and a chunk that does not
 * fit is refused as a value (SnapshotChunkRefused naming the check) that ends the transfer. The image
 * reaches raft only once it is complete and its SHA-256 matches, so memory per transfer is bounded by
 * `snapshotBytesMax` and a damaged or truncated image is never installed.
 */
import { createHash } from "node:crypto";
import { MessageType, type Message } from "../../cluster/raft/core/types.js";
import { decodeMessage, encodeMessage, type WireMessage } from "./raft-wire-codec.js";

/** Bounds of one transfer, the same on both ends of a link. */
export interface SnapshotChunkLimits {
  /** Largest `data` of one chunk. */
  chunkBytesMax: number;
  /** Largest image a receiver accepts. */
  snapshotBytesMax: number;
}

/** lockbox.v1.SnapshotChunk as proto-loader produces it (keepCase, longs: Number, defaults). */
export interface WireSnapshotChunk {
  from: string;
  header: { message: WireMessage; total_bytes: number; sha256: Uint8Array } | null;
  offset: number;
  data: Uint8Array;
}

/** Why a chunk or a transfer was refused; each is one check, counted by the transport. */
export type SnapshotRefusal =
  | "header" // the first chunk has no valid header, or a later chunk has one
  | "sender" // a chunk names another sender than the call's
  | "too-large" // the declared image exceeds snapshotBytesMax
  | "oversized" // a chunk's data exceeds chunkBytesMax
  | "empty" // a chunk without data before the image is complete
  | "duplicate" // a chunk repeats bytes already received
  | "out-of-order" // a chunk leaves a gap after the bytes received
  | "past-end" // a chunk goes beyond the declared size, or arrives after the image is complete
  | "digest" // the complete image's SHA-256 differs from the declared one
  | "timeout"; // the transfer took longer than its bound

export class SnapshotChunkRefused extends Error {
  override readonly name = "SnapshotChunkRefused";
  readonly code = "SNAPSHOT_CHUNK_REFUSED";
  constructor(
    readonly refusal: SnapshotRefusal,
    message: string,
  ) {
    super(`snapshot chunk refused (${refusal}): ${message}`);
  }
}

const DIGEST_BYTES = 32;

/** The chunks that carry InstallSnapshot message `m` (whose snapshot is set) from `from`. */
export function snapshotChunks(from: string, m: Message, chunkBytes: number): WireSnapshotChunk[] {
  const snap = m.snapshot;
  if (m.type !== MessageType.Snapshot || snap === null) {
    throw new RangeError("snapshotChunks: not an InstallSnapshot message");
  }
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1) throw new RangeError("chunkBytes must be >= 1");
  const data = snap.data;
  const header = {
    message: encodeMessage({ ...m, snapshot: { ...snap, data: new Uint8Array(0) } }),
    total_bytes: data.byteLength,
    sha256: new Uint8Array(createHash("sha256").update(data).digest()),
  };
  const chunks: WireSnapshotChunk[] = [];
  for (let offset = 0; offset < data.byteLength || chunks.length === 0; offset += chunkBytes) {
    chunks.push({
      from,
      header: chunks.length === 0 ? header : null,
      offset,
      data: data.subarray(offset, Math.min(data.byteLength, offset + chunkBytes)),
    });
  }
  return chunks;
}

/** One transfer being received: started by its first chunk, fed the rest in order. */
export class SnapshotAssembly {
  readonly from: string;
  readonly totalBytes: number;
  #received = 0;
  readonly #parts: Uint8Array[] = [];
  readonly #header: Message;
  readonly #sha256: Uint8Array;
  readonly #limits: SnapshotChunkLimits;

  /** Checks the first chunk of a call (`chunk` as received: untrusted) and takes its data. */
  constructor(chunk: unknown, limits: SnapshotChunkLimits) {
    this.#limits = limits;
    const c = chunk as Partial<WireSnapshotChunk> | null;
    const header = c?.header;
    if (typeof header !== "object" || header === null) {
      throw new SnapshotChunkRefused("header", "the first chunk has no header");
    }
    let message: Message;
    try {
      message = decodeMessage(header.message);
    } catch (e) {
      throw new SnapshotChunkRefused("header", `its raft message: ${(e as Error).message}`);
    }
    if (message.type !== MessageType.Snapshot || message.snapshot === null) {
      throw new SnapshotChunkRefused("header", "its raft message is not an InstallSnapshot");
    }
    if (message.snapshot.data.byteLength !== 0) {
      throw new SnapshotChunkRefused("header", "its raft message carries data (the data goes in chunks)");
    }
    if (typeof c?.from !== "string" || c.from !== message.from) {
      throw new SnapshotChunkRefused("sender", "the chunk's sender is not its raft message's");
    }
    const total = header.total_bytes;
    if (typeof total !== "number" || !Number.isSafeInteger(total) || total < 0) {
      throw new SnapshotChunkRefused("header", "total_bytes is not a size");
    }
    if (total > limits.snapshotBytesMax) {
      throw new SnapshotChunkRefused(
        "too-large",
        `${total} bytes declared, at most ${limits.snapshotBytesMax}`,
      );
    }
    if (!(header.sha256 instanceof Uint8Array) || header.sha256.byteLength !== DIGEST_BYTES) {
      throw new SnapshotChunkRefused("header", "sha256 is not 32 bytes");
    }
    this.from = message.from;
    this.totalBytes = total;
    this.#header = message;
    this.#sha256 = new Uint8Array(header.sha256);
    this.#take(c, true);
  }

  /** Bytes accepted so far. */
  get receivedBytes(): number {
    return this.#received;
  }

  get complete(): boolean {
    return this.#received === this.totalBytes;
  }

  /** Checks and takes one later chunk; returns the bytes received so far. */
  add(chunk: unknown): number {
    const c = chunk as Partial<WireSnapshotChunk> | null;
    if (c?.header !== null && c?.header !== undefined) {
      throw new SnapshotChunkRefused("header", "a chunk after the first carries a header");
    }
    if (c?.from !== this.from) throw new SnapshotChunkRefused("sender", "the chunk names another sender");
    this.#take(c, false);
    return this.#received;
  }

  /** The InstallSnapshot message with its whole image, once complete and intact. */
  message(): Message {
    if (!this.complete) throw new RangeError("snapshot transfer is not complete");
    const data = this.#parts.length === 1 ? this.#parts[0]! : new Uint8Array(Buffer.concat(this.#parts));
    const digest = createHash("sha256").update(data).digest();
    if (!digest.equals(this.#sha256)) {
      throw new SnapshotChunkRefused("digest", "the reassembled image does not match its SHA-256");
    }
    return { ...this.#header, snapshot: { ...this.#header.snapshot!, data } };
  }

  #take(c: Partial<WireSnapshotChunk>, first: boolean): void {
    const { offset, data } = c;
    if (!(data instanceof Uint8Array)) throw new SnapshotChunkRefused("header", "data is not bytes");
    if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0) {
      throw new SnapshotChunkRefused("header", "offset is not a position");
    }
    if (data.byteLength > this.#limits.chunkBytesMax) {
      throw new SnapshotChunkRefused(
        "oversized",
        `${data.byteLength} bytes in one chunk, at most ${this.#limits.chunkBytesMax}`,
      );
    }
    if (!first && this.complete) {
      throw new SnapshotChunkRefused("past-end", "a chunk after the image was complete");
    }
    if (offset < this.#received) {
      throw new SnapshotChunkRefused("duplicate", `offset ${offset}, ${this.#received} bytes already held`);
    }
    if (offset > this.#received) {
      throw new SnapshotChunkRefused("out-of-order", `offset ${offset}, expected ${this.#received}`);
    }
    if (offset + data.byteLength > this.totalBytes) {
      throw new SnapshotChunkRefused("past-end", `ends at ${offset + data.byteLength} of ${this.totalBytes}`);
    }
    if (data.byteLength === 0 && !this.complete) {
      throw new SnapshotChunkRefused("empty", "a chunk without data before the image is complete");
    }
    // Copied: the received buffer may be a view into a larger one that would otherwise stay alive.
    if (data.byteLength > 0) this.#parts.push(new Uint8Array(data));
    this.#received += data.byteLength;
  }
}
