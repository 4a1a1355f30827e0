/**
 * The hybrid logical clock's high-water mark on disk (cluster/replication/hlc.ts keeps the clock in
 * memory only). Without it, a peer restarted, or whose physical clock stepped back, could stamp a
 * change lower than one it stamped before, and its later change would lose the last-writer-wins
 * merge to its own earlier one.
 *
 * A lease, so that not every stamp writes: the store holds a bound `highWaterMs` that no stamp this
 * peer has sent exceeds. Before a record leaves this peer (ReplicationNode's write), the bound must
 * cover the clock's current wall time; when it does not, it is raised and synced first. It is raised
 * in the background once physical time comes within half a lease of it, so on a steady clock no
 * write ever waits for it. At start the clock resumes just above the bound (`resumeFrom`), so every
 * later stamp is above every stamp sent before the restart, whatever the physical clock says.
 *
 * A raise puts the bound at `max(bound, clock wall time, physical time + leaseMs)`: a lease ahead of
 * the PHYSICAL clock, not of the previous bound nor of the clock (which resumes at the bound). Based
 * on either of those, every restart that writes would move the clock another lease ahead of real
 * time, until other peers refuse its stamps (hlc.ts maxDriftMs) and a later change by another peer
 * loses the last-writer-wins merge to an earlier one of this peer. So the clock's lead over physical
 * time stays below about a lease (plus what it observed from others), however many restarts.
 *
 * Stored in the "meta" sublevel under HLC_HIGH_WATER_KEY as `{"v":1,"highWaterMs":<integer>}`. A
 * value that does not parse is DATA_LOSS at start, naming the key: guessing a lower bound could
 * issue stamps that lose to ones already sent.
 */
import type { HlcStamp } from "../../cluster/replication/index.js";
import { LockboxError } from "../errors.js";
import type { PeerStore } from "../store/peer-store.js";

export const HLC_HIGH_WATER_KEY = "replication/hlc-high-water";
/** How far ahead of the clock one raise puts the bound (one synced write per this much clock time). */
export const HLC_LEASE_MS = 10_000;

export class HlcLease {
  /** The bound on disk. */
  private durableMs: number;
  private raising: Promise<void> | undefined;
  /** Synced raises of the bound, for tests and metrics. */
  raises = 0;

  private constructor(
    private readonly store: PeerStore,
    private readonly leaseMs: number,
    private readonly nowMs: () => number,
    stored: number,
  ) {
    this.durableMs = stored;
  }

  /** Reads the bound (0 on a store that never held one); `nowMs` is the physical clock. */
  static async open(
    store: PeerStore,
    leaseMs = HLC_LEASE_MS,
    nowMs: () => number = Date.now,
  ): Promise<HlcLease> {
    if (!Number.isSafeInteger(leaseMs) || leaseMs < 1) throw new RangeError("leaseMs must be positive");
    const bytes = await store.get("meta", HLC_HIGH_WATER_KEY);
    return new HlcLease(store, leaseMs, nowMs, bytes === undefined ? 0 : parseHighWater(bytes));
  }

  /** The bound on disk: no stamp sent before it was read exceeds it. */
  get highWaterMs(): number {
    return this.durableMs;
  }

  /** Where the clock resumes at start: just above every stamp this peer sent before (none: undefined). */
  resumeFrom(peer: string): HlcStamp | undefined {
    return this.durableMs === 0 ? undefined : { wallMs: this.durableMs + 1, logical: 0, peer };
  }

  /**
   * Makes sure the bound on disk covers `wallMs` (the clock's wall time now). Returns undefined when
   * it does already (raising it in the background when physical time is within half a lease of it),
   * or a promise that resolves once a raise covering it is synced.
   */
  cover(wallMs: number): Promise<void> | undefined {
    if (wallMs <= this.durableMs) {
      if (this.nowMs() + this.leaseMs / 2 > this.durableMs && this.raising === undefined)
        this.raise(wallMs).catch(() => {}); // the next write retries and waits for it
      return undefined;
    }
    return this.coverAfterRaises(wallMs);
  }

  private async coverAfterRaises(wallMs: number): Promise<void> {
    while (wallMs > this.durableMs) {
      if (this.raising !== undefined) await this.raising.catch(() => {});
      else await this.raise(wallMs);
    }
  }

  private raise(wallMs: number): Promise<void> {
    // A lease ahead of physical time, never of the bound itself (see the head of this file).
    const next = Math.max(this.durableMs, wallMs, this.nowMs() + this.leaseMs);
    const value = new TextEncoder().encode(JSON.stringify({ v: 1, highWaterMs: next }));
    this.raising = this.store
      .write([{ type: "put", sublevel: "meta", key: HLC_HIGH_WATER_KEY, value }])
      .then(() => {
        this.durableMs = Math.max(this.durableMs, next);
        this.raises += 1;
      })
      .finally(() => {
        this.raising = undefined;
      });
    return this.raising;
  }
}

function parseHighWater(bytes: Uint8Array): number {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    v = undefined;
  }
  const ms = (v as { v?: unknown; highWaterMs?: unknown } | undefined)?.highWaterMs;
  if (
    typeof v !== "object" ||
    v === null ||
    (v as { v?: unknown }).v !== 1 ||
    Object.keys(v).length !== 2 ||
    typeof ms !== "number" ||
    !Number.isSafeInteger(ms) ||
    ms < 0
  ) {
    throw new LockboxError(
      "DATA_LOSS",
      `the clock's high-water mark (meta ${HLC_HIGH_WATER_KEY}) is damaged; restore the store from a backup`,
    );
  }
  return ms;
}
