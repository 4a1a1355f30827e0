/**
 * What the leader does on its own, on a timer: the membership autopilot (membership-autopilot.ts), the
 * founding peer's first records (founding-duties.ts), and undoing attested joins that were never
 * confirmed (a joiner that died, or gave up, between its admission and sealing the CMK). Every peer runs the loop; it acts only while
 * its raft node leads, and a failed step is logged and tried again next round.
 */
import type { ControlPlane } from "./control-plane.js";
import { foundingCommands, type FoundingFacts } from "./founding-duties.js";
import { AUTOPILOT_DEFAULTS, decideAutopilotStep, type AutopilotPolicy } from "./membership-autopilot.js";
import type { RingDuty } from "./ring-duty.js";

/** A round still running after this long is reported once (see start()). */
const ROUND_SLOW_MS = 30_000;

export interface LeaderDutiesOptions {
  control: ControlPlane;
  /** This peer's own facts, known once its server listens. */
  facts: () => FoundingFacts | undefined;
  policy?: Partial<AutopilotPolicy>;
  intervalMs?: number;
  log: (line: string) => void;
  /** Keeps the ring in line with the members (ring-duty.ts); absent: this cluster has no ring. */
  ring?: RingDuty;
  /** How long a joining member has to confirm, counted from when this leader first saw its admission. */
  joinConfirmTimeoutMs?: number;
}

export const JOIN_CONFIRM_TIMEOUT_MS_DEFAULT = 120_000;

export class LeaderDuties {
  readonly #opts: LeaderDutiesOptions;
  readonly #policy: AutopilotPolicy;
  readonly #learnerSince = new Map<string, number>();
  readonly #voterSeen = new Map<string, number>();
  /** "id/serial" of each joining admission -> when this leader first saw it (its own clock: no skew). */
  readonly #joiningSince = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #lastLogged = "";

  constructor(options: LeaderDutiesOptions) {
    this.#opts = options;
    this.#policy = { ...AUTOPILOT_DEFAULTS, ...options.policy };
  }

  start(): void {
    let startedAt = 0;
    let warned = false;
    const tick = (): void => {
      if (this.#running) {
        // Every await in a round is bounded; one that is not would stop the autopilot silently.
        if (!warned && Date.now() - startedAt > ROUND_SLOW_MS) {
          warned = true;
          this.#opts.log(`control: a leader duty round has not finished after ${ROUND_SLOW_MS} ms`);
        }
        return;
      }
      this.#running = true;
      startedAt = Date.now();
      warned = false;
      void this.round()
        .catch((e: unknown) =>
          this.#note(`control: leader duty failed: ${e instanceof Error ? e.message : String(e)}`),
        )
        .finally(() => {
          this.#running = false;
        });
    };
    this.#timer = setInterval(tick, this.#opts.intervalMs ?? 250);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** One round; exported for tests that step it. */
  async round(): Promise<void> {
    const { control } = this.#opts;
    const driver = control.driver;
    const status = driver.status();
    if (status.role !== "leader") {
      this.#learnerSince.clear();
      this.#voterSeen.clear();
      this.#joiningSince.clear();
      return;
    }
    const facts = this.#opts.facts();
    if (facts !== undefined) {
      for (const command of foundingCommands(control.state, facts)) {
        const { result } = await control.propose(command);
        if (!result.ok) this.#note(`control: founding step ${command.type} refused: ${result.reason}`);
      }
    }
    const ring = this.#opts.ring?.next(control.state, Date.now());
    // A ring in parts: in order, stopping at a refusal (the next try starts the upload again).
    for (const command of ring ?? []) {
      const { result } = await control.propose(command);
      if (!result.ok) {
        this.#note(`control: ring step refused: ${result.reason}`);
        break;
      }
    }
    // A removed leader hands over first; the next leader takes it out of the configuration.
    if (control.state.member(control.peerId)?.state === "removed") {
      const heir = status.confState.voters.find(
        (id) => id !== control.peerId && status.progress[id]?.recentActive,
      );
      if (heir !== undefined) {
        this.#opts.log(`control: this peer was removed; handing leadership to ${heir}`);
        await driver.transferLeadership(heir);
      }
      return;
    }
    const now = Date.now();
    await this.#undoUnconfirmedJoins(now);
    for (const id of status.confState.learners)
      if (!this.#learnerSince.has(id)) this.#learnerSince.set(id, now);
    for (const id of [...this.#learnerSince.keys()]) {
      if (!status.confState.learners.includes(id)) this.#learnerSince.delete(id);
    }
    for (const id of status.confState.voters) {
      // A voter first seen by this leader gets the benefit of the doubt for one dead-voter period.
      if (!this.#voterSeen.has(id) || status.progress[id]?.recentActive === true)
        this.#voterSeen.set(id, now);
    }
    const step = decideAutopilotStep(
      {
        self: control.peerId,
        nowMs: now,
        confState: status.confState,
        lastIndex: status.lastIndex,
        progress: status.progress,
        members: control.state.members(),
        learnerSinceMs: this.#learnerSince,
        voterSeenMs: this.#voterSeen,
      },
      this.#policy,
    );
    if (step === null) return;
    this.#opts.log(`control: autopilot: ${step.kind} ${step.id}${"why" in step ? ` (${step.why})` : ""}`);
    const done =
      step.kind === "add-learner"
        ? await driver.addLearner(step.id, new TextEncoder().encode(step.address))
        : step.kind === "promote"
          ? await driver.promote(step.id)
          : await driver.removeVoter(step.id);
    this.#opts.log(`control: autopilot: ${step.kind} ${step.id} committed at index ${done.index}`);
  }

  /**
   * A joining member is one the cluster admitted but whose joiner has not confirmed that it holds the
   * CMK. One that stays so past the timeout goes back to enrolled, its certificate revoked, so no
   * member without its key ever becomes active; its peer may join again. A new leader counts afresh.
   */
  async #undoUnconfirmedJoins(now: number): Promise<void> {
    const { control } = this.#opts;
    const timeoutMs = this.#opts.joinConfirmTimeoutMs ?? JOIN_CONFIRM_TIMEOUT_MS_DEFAULT;
    const seen = new Set<string>();
    for (const m of control.state.members()) {
      if (m.state !== "joining") continue;
      const key = `${m.id}/${m.certificateSerial}`;
      seen.add(key);
      const since = this.#joiningSince.get(key);
      if (since === undefined) {
        this.#joiningSince.set(key, now);
        continue;
      }
      if (now - since < timeoutMs) continue;
      const { result } = await control.propose({
        type: "member.transition",
        id: m.id,
        from: "joining",
        to: "enrolled",
        reason: `join not confirmed within ${timeoutMs} ms; its certificate is revoked (join again)`,
        // Only this admission: a retried one committed since (another serial) is left alone.
        certificateSerial: m.certificateSerial,
        atMs: now,
      });
      if (result.ok) this.#opts.log(`control: undid the unconfirmed join of ${m.id}`);
      else this.#note(`control: undoing the join of ${m.id} refused: ${result.reason}`);
    }
    for (const key of [...this.#joiningSince.keys()]) if (!seen.has(key)) this.#joiningSince.delete(key);
  }

  #note(line: string): void {
    // The same failure every round would flood the log.
    if (line === this.#lastLogged) return;
    this.#lastLogged = line;
    this.#opts.log(line);
  }
}
