/**
 * The replica's durable state, behind one interface so the simulator can run the production replica
 * over a simulated disk (crash, torn and lost unsynced writes) and the peer over LevelDB
 * (leveldb-replica-store.ts, on the peer's one store: sublevels "records" and "hints").
 *
 * Records are keyed by partition then id, so one partition reads as one range. A hint names a record
 * this peer holds for another peer (the owner), Swift's handoff copy; the record itself lives among the
 * records. A quarantine mark names a partition that lost damaged records and is not yet re-fetched.
 * `write` is atomic and resolves only after its batch is synced; concurrent writers share one
 * sync (group commit).
 */
export type ReplicaStoreOp =
  /**
   * `purge`: the version replaced held wrapped material the new one does not (a tombstone): the store
   * should also drop the old version from its files soon (PeerStore's purger), not only hide it.
   */
  | { type: "put-record"; partition: number; id: string; value: Uint8Array; purge?: boolean }
  /** A record deleted leaves the files too (its older versions may hold material). */
  | { type: "del-record"; partition: number; id: string }
  /** `atMs`: when the copy was last written (the handoff runner expires old copies, hinted-handoff.ts). */
  | { type: "put-hint"; partition: number; id: string; owner: string; atMs: number }
  | { type: "del-hint"; partition: number; id: string; owner: string }
  /** A partition quarantined after damage: durable, so a restart does not serve what was lost. */
  | { type: "put-quarantine"; partition: number }
  | { type: "del-quarantine"; partition: number };

export interface StoredRecord {
  id: string;
  /** The encoded record as stored (replicated-key-codec.ts); the replica checks it on every read. */
  value: Uint8Array;
}

export interface Hint {
  partition: number;
  id: string;
  owner: string;
}

export interface StoredHint extends Hint {
  atMs: number;
}

export interface ReplicaStore {
  /**
   * Loads what the store keeps in memory about its records (LevelReplicaStore's id filter). The store
   * serves correctly before it resolves (only slower), so the replica does not wait for it; it never
   * rejects.
   */
  open?(): Promise<void>;
  getRecord(partition: number, id: string): Promise<Uint8Array | undefined>;
  /** Every record of a partition, by id; at most `limit` (the caller treats more as an error). */
  scanPartition(partition: number, limit: number): Promise<StoredRecord[]>;
  /** Partitions holding at least one record, ascending. */
  partitions(): Promise<number[]>;
  /** Up to `limit` hints, in key order. */
  hints(limit: number): Promise<StoredHint[]>;
  /** Partitions marked quarantined, ascending. */
  quarantined(): Promise<number[]>;
  /** Writes `ops` atomically; resolves once they are synced. */
  write(ops: readonly ReplicaStoreOp[]): Promise<void>;
}
