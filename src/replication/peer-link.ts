/**
 * What replicas say to each other (DESIGN §4), independent of the transport. One message (a batch)
 * carries many items, each for one partition: the production link is a long-lived gRPC stream per
 * peer pair, the simulator's an in-memory network with faults. The wiring implements `PeerLink`.
 *
 * Items (every one answered by one result, in order):
 *   put     a record version to merge and sync; `hintFor` names the primary this copy stands in for
 *           when the receiver is a handoff peer (Swift's hinted handoff)
 *   get     one record of a partition
 *   digest  the partition's bucket digests (partition-digest.ts)
 *   pull    every record of some buckets of a partition (anti-entropy repair of a quarantined partition)
 *
 * Everything a peer receives is hostile until checked: the replica validates items, the coordinator
 * and anti-entropy validate results (validate-reply.ts).
 */
import type { ReplicatedKey } from "../../cluster/replication/index.js";
import type { LockboxErrorCode } from "../errors.js";

export type ReplicaItem =
  | {
      kind: "put";
      partition: number;
      record: Uint8Array;
      hintFor?: string;
      /**
       * The record `record` was just encoded from, when this peer's own coordinator sends it to its
       * own replica: the replica takes it instead of decoding the bytes again, but only on its local
       * path (Replica.handleLocal). Never sent, never read from a network frame.
       */
      decoded?: ReplicatedKey;
    }
  | { kind: "get"; partition: number; id: string }
  | { kind: "digest"; partition: number }
  | { kind: "pull"; partition: number; buckets: number[] };

/** A failed item: the code says whether to retry elsewhere (UNAVAILABLE) or not. */
export interface ItemFailure {
  ok: false;
  code: LockboxErrorCode;
  message: string;
}

export type ReplicaItemResult =
  | { ok: true; kind: "put" }
  | {
      ok: true;
      kind: "get";
      record: Uint8Array | null;
      /**
       * The record `record` decodes to, as the replica checked it (sound, of the id asked), when this
       * peer's own replica answers its own coordinator: the coordinator takes it instead of decoding
       * the bytes again. Only on the local path (Replica.handleLocal, LinkBatcher): never sent, never
       * read from a network frame.
       */
      decoded?: ReplicatedKey;
    }
  | { ok: true; kind: "digest"; digest: Uint8Array }
  | { ok: true; kind: "pull"; records: Uint8Array[] }
  | ItemFailure;

export interface ReplicaBatch {
  /** The sending peer (the transport authenticates it; the replica trusts the link for this). */
  from: string;
  items: ReplicaItem[];
}

export interface ReplicaBatchReply {
  /** One per item, in item order. */
  results: ReplicaItemResult[];
}

/**
 * The transport between replicas. `send` resolves with the peer's reply, or rejects when the batch
 * cannot be delivered or answered (stream broken, peer unknown); it need not time out by itself: the
 * batcher (link-batcher.ts) puts a deadline on every batch.
 */
export interface PeerLink {
  send(to: string, batch: ReplicaBatch): Promise<ReplicaBatchReply>;
}

/** Bounds on one batch, checked by sender and receiver. */
export const BATCH_ITEMS_MAX = 512;
export const PULL_BUCKETS_MAX = 4096;
/** A pull answers at most this many records; a larger partition is pulled bucket by bucket. */
export const PULL_RECORDS_MAX = 8192;

export const failure = (code: LockboxErrorCode, message: string): ItemFailure => ({
  ok: false,
  code,
  message,
});

/**
 * Checks that a result from the network answers its item: the right kind, the right shapes. A
 * malformed one becomes a failure, so callers only ever see well-formed results.
 */
export function checkResult(item: ReplicaItem, r: unknown, local = false): ReplicaItemResult {
  const bad = (what: string): ItemFailure => failure("INTERNAL", `malformed ${item.kind} result: ${what}`);
  if (typeof r !== "object" || r === null) return bad("not an object");
  const res = r as Record<string, unknown>;
  if (res.ok === false) {
    return typeof res.code === "string" && typeof res.message === "string"
      ? failure(res.code as ItemFailure["code"], res.message.slice(0, 512))
      : bad("failure without code");
  }
  if (res.ok !== true || res.kind !== item.kind) return bad("wrong kind");
  switch (item.kind) {
    case "put":
      return { ok: true, kind: "put" };
    case "get":
      if (res.record !== null && !(res.record instanceof Uint8Array)) return bad("record is not bytes");
      // The decoded record is kept only from this peer's own replica (`local`), with its bytes.
      if (local && res.record !== null && res.decoded !== undefined)
        return { ok: true, kind: "get", record: res.record, decoded: res.decoded as ReplicatedKey };
      return { ok: true, kind: "get", record: res.record as Uint8Array | null };
    case "digest":
      if (!(res.digest instanceof Uint8Array)) return bad("digest is not bytes");
      return { ok: true, kind: "digest", digest: res.digest };
    case "pull":
      if (
        !Array.isArray(res.records) ||
        res.records.length > PULL_RECORDS_MAX ||
        !res.records.every((x) => x instanceof Uint8Array)
      )
        return bad("records are not a bounded list of bytes");
      return { ok: true, kind: "pull", records: res.records as Uint8Array[] };
  }
}
