import { assert } from "./assert.js";

/**
 * The leader's view of one follower (etcd tracker.Progress). `probe`: one append at a time until the
 * follower's position is found; `replicate`: appends pipelined optimistically (next advanced on send)
 * under a bounded in-flight window; `snapshot`: waiting for an InstallSnapshot to land.
 */
export class Progress {
  match = 0;
  next: number;
  state: "probe" | "replicate" | "snapshot" = "probe";
  /** probe: an append is outstanding; further ones wait for a response or a heartbeat ack. */
  probeSent = false;
  /** snapshot: the snapshot index sent. */
  pendingSnapshot = 0;
  /** snapshot: ticks spent waiting, to resend after a lost snapshot or ack. */
  snapshotTicks = 0;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  /** Last index of each in-flight append (replicate state), oldest first. */
  readonly inflights: number[] = [];

  constructor(
    next: number,
    private readonly inflightMax: number,
  ) {
    assert(next >= 1, "progress next must be >= 1");
    this.next = next;
  }

  private resetState(state: Progress["state"]): void {
    this.state = state;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.snapshotTicks = 0;
    this.inflights.length = 0;
  }

  becomeProbe(): void {
    if (this.state === "snapshot") {
      const pending = this.pendingSnapshot;
      this.resetState("probe");
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState("probe");
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState("replicate");
    this.next = this.match + 1;
  }

  becomeSnapshot(index: number): void {
    this.resetState("snapshot");
    this.pendingSnapshot = index;
  }

  /** An ack for `index`; returns whether it told us something new. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /**
   * A rejection of the append after `rejected`; `matchHint` is the highest index that may match.
   * Returns false for a stale rejection.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  /** Record an append sent with entries up to `last` (optimistic advance in replicate state). */
  sentEntries(last: number, count: number): void {
    if (this.state === "replicate") {
      if (count > 0) {
        this.next = last + 1;
        this.inflights.push(last);
        assert(this.inflights.length <= this.inflightMax, "in-flight window overflow");
      }
    } else if (this.state === "probe") {
      this.probeSent = true;
    }
  }

  freeInflightsTo(index: number): void {
    while (this.inflights.length > 0 && this.inflights[0]! <= index) this.inflights.shift();
  }

  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.inflights.length >= this.inflightMax;
      case "snapshot":
        return true;
    }
  }
}
