/**
 * Whether this peer is fenced (issue 9 item 5), as it can know it: a fenced peer is sent nothing, so
 * the control-state entry that fences it may never reach it. It knows from two sources:
 *
 * - its own control state, when the fence entry did reach it (a fenced leader applies its own fence);
 * - the refusals of the others: every member refuses its calls with the structured code "fenced"
 *   (pki/peer-refusal.ts). A fenced voter's pre-vote campaigns and a follower's re-quotes of the
 *   leader keep being refused, so the notice is renewed at least once per attestation interval; it
 *   lapses `noticeMs` after the last refusal, and at once when its own state applies an entry that
 *   makes it anything but fenced (the leader sends again only after unfencing it).
 *
 * While fenced the peer reports NOT_SERVING on gRPC health, fails /readyz and refuses key calls.
 * onChange listeners hear every event that may change the answer of state(): a refusal, an entry about
 * itself, and a refusal's notice lapsing (a timer at its end), so health changes with the fence.
 */
export interface SelfFenceOptions {
  /** This peer's member state and reason in its own control state, if it has a record. */
  ownRecord(): { state: string; reason: string } | undefined;
  /** How long a refusal's notice lasts without another. */
  noticeMs: number;
  now?: () => number;
}

export type SelfFenceState =
  | { readonly fenced: false }
  | { readonly fenced: true; readonly reason: string; readonly source: "control-state" | "refused" };

export class SelfFence {
  #notice: { atMs: number; by: string; details: string } | undefined;
  readonly #listeners: (() => void)[] = [];
  #lapse: NodeJS.Timeout | undefined;

  constructor(private readonly options: SelfFenceOptions) {}

  /** Calls `listener` after every event that may change state(). */
  onChange(listener: () => void): void {
    this.#listeners.push(listener);
  }

  /** Another peer refused a call of this one; only "fenced" refusals count here. */
  refusedBy(peerId: string, code: string, details: string): void {
    if (code !== "fenced") return;
    const wasFenced = this.state().fenced;
    // Bounded: the details are the refuser's words, kept only for status.
    this.#notice = { atMs: this.#now(), by: peerId, details: details.slice(0, 512) };
    this.#scheduleLapse();
    if (!wasFenced) this.#changed();
  }

  /** This peer's own record changed (it applied an entry about itself). */
  ownRecordChanged(state: string): void {
    if (state !== "fenced") this.#notice = undefined;
    this.#changed();
  }

  /** Stops the notice's timer. */
  close(): void {
    clearTimeout(this.#lapse);
    this.#lapse = undefined;
  }

  /** Tells the listeners when the notice lapses (a timer firing early waits for the rest). */
  #scheduleLapse(): void {
    clearTimeout(this.#lapse);
    this.#lapse = undefined;
    const n = this.#notice;
    if (n === undefined || this.#listeners.length === 0) return;
    const leftMs = n.atMs + this.options.noticeMs - this.#now();
    this.#lapse = setTimeout(
      () => {
        if (this.#notice === n && this.#now() - n.atMs < this.options.noticeMs) this.#scheduleLapse();
        else this.#changed();
      },
      Math.max(1, leftMs + 1),
    );
    this.#lapse.unref();
  }

  #changed(): void {
    for (const l of this.#listeners) {
      try {
        l();
      } catch {
        /* a listener reports its own failures */
      }
    }
  }

  state(): SelfFenceState {
    const own = this.options.ownRecord();
    if (own?.state === "fenced") return { fenced: true, reason: own.reason, source: "control-state" };
    const n = this.#notice;
    if (n !== undefined && this.#now() - n.atMs < this.options.noticeMs) {
      return { fenced: true, reason: `${n.by} refuses this peer's calls: ${n.details}`, source: "refused" };
    }
    return { fenced: false };
  }

  #now(): number {
    return this.options.now?.() ?? Date.now();
  }
}
