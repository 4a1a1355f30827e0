import { assert } from "./assert.js";

/**
 * The leader's view of one follower (etcd tracker.Progress). `probe`: one append at a time until the
 * follower's position is found; `replicate`: appends pipelined optimistically (next advanced on send)
 * under an in-flight window bounded in appends and in payload bytes (etcd Inflights); `snapshot`:
 * waiting for an InstallSnapshot to land.
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
  /** Last index and payload bytes of each in-flight append (replicate state), oldest first. */
  readonly inflights: { last: number; bytes: number }[] = [];
  /** Sum of `inflights[].bytes`. */
  inflightBytes = 0;

  constructor(
    next: number,
    private readonly inflightMax: number,
    private readonly inflightBytesMax: number,
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
    this.inflightBytes = 0;
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

  /** Record an append sent with `count` entries up to `last` holding `bytes` payload bytes. */
  sentEntries(last: number, count: number, bytes: number): void {
    if (this.state === "replicate") {
      if (count > 0) {
        assert(!this.inflightFull(), "append sent into a full in-flight window");
        this.next = last + 1;
        this.inflights.push({ last, bytes });
        this.inflightBytes += bytes;
      }
    } else if (this.state === "probe") {
      this.probeSent = true;
    }
  }

  /** An ack for `index` frees every in-flight append up to it. */
  freeInflightsTo(index: number): void {
    while (this.inflights.length > 0 && this.inflights[0]!.last <= index) this.freeFirstOne();
  }

  /** Frees the oldest in-flight append (a heartbeat ack while the window is full: etcd FreeFirstOne). */
  freeFirstOne(): void {
    const first = this.inflights.shift();
    if (first !== undefined) this.inflightBytes -= first.bytes;
  }

  /** Full when it holds inflightMax appends or inflightBytesMax payload bytes. */
  inflightFull(): boolean {
    return this.inflights.length >= this.inflightMax || this.inflightBytes >= this.inflightBytesMax;
  }

  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.inflightFull();
      case "snapshot":
        return true;
    }
  }
}
