/**
 * What the driver applies committed entries to. The driver calls apply() once per committed normal
 * entry, in log order, exactly once per process lifetime per index above the restored snapshot; the
 * state machine must be deterministic (same entries in the same order give the same state and the same
 * results on every replica), because every replica applies the same log.
 */
export interface StateMachine<R = unknown> {
  /**
   * Applies one committed entry's data at `index` and returns its result, which the driver hands to the
   * local proposer (if any). It must not throw for bad data: a committed entry is a fact, so a command
   * that makes no sense is answered with an error result and changes nothing.
   */
  apply(data: Uint8Array, index: number): R;
  /** The whole state as bytes, as of the last applied index. */
  snapshot(): Uint8Array;
  /** Replaces the whole state with a snapshot() output. */
  restore(bytes: Uint8Array): void;
  /**
   * Throws if restore() would refuse `bytes` as the image at log `index`. The driver calls it on every
   * snapshot a peer sends, before the core sees it: once accepted, a snapshot is persisted and restored,
   * and bytes that restore() refuses would stop the node and stop it again at every restart.
   */
  checkSnapshot?(bytes: Uint8Array, index: number): void;
}
