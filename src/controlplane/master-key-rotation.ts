/**
 * `lockbox master-key rotate` on the peer that takes the call (DESIGN.md §2, §5 "Rotation"):
 *
 * 1. stage: a new 256-bit CMK of epoch N+1 is made here, sealed with the epochs this peer holds to its
 *    own TPM, held in its barrier (not active), and only its number enters the log (cmk.epoch-stage);
 * 2. deliver: every other member's epoch keeper (cmk-epoch-keeper.ts) fetches N+1 from a holder by
 *    attestation (fresh quote, key wrapped to an ephemeral ECDH key: src/attestation/epoch-delivery.ts),
 *    seals it to its own TPM and reports holding it (cmk.epoch-held);
 * 3. activate: once every active member holds N+1 (the state machine checks it too), cmk.epoch-activate
 *    makes it the epoch new wraps use; N starts retiring. Readers need nothing: every member already
 *    holds both epochs, and a KEK's plaintext does not change, so cached KEKs stay good;
 * 4. re-wrap every project KEK and the CA key still under an older epoch, in bounded batches
 *    (kek.rewrap is compare-and-set on the epoch, so a concurrent re-wrap or delete changes nothing);
 * 5. retire each retiring epoch once nothing refers to it and every member that may serve again holds
 *    N+1 (a member down during the rotation fetches N+1 when it comes back; retirement waits for it).
 *
 * The work runs in the background; `status()` and the control state show its progress. Calling rotate
 * again while a rotation is unfinished resumes it (on any peer) instead of starting another.
 */
import type { Barrier } from "../crypto/barrier.js";
import { MASTER_KEY_BYTES } from "../crypto/keyring.js";
import { zeroize, type RandomSource } from "../crypto/random-source.js";
import { encodeRecoveryShare, makeRecoveryShares } from "../crypto/recovery-share.js";
import { LockboxError, invalidArgument } from "../errors.js";
import { kekBinding } from "../keys/project-keks.js";
import type { Clock } from "../time/clock.js";
import { CA_KEY_BINDING } from "./cluster-ca-key.js";
import type { CmkEpochKeeper } from "./cmk-epoch-keeper.js";
import type { CmkEpochRecord } from "./control-records.js";
import type { ControlPlane } from "./control-plane.js";

export interface RotationTunables {
  /** KEKs re-wrapped per batch (each its own raft entry, proposed concurrently). */
  rewrapBatch: number;
  /** How long delivery and retirement may wait for members before the rotation stops and says why. */
  waitMs: number;
  pollMs: number;
}

export const ROTATION_DEFAULTS: RotationTunables = { rewrapBatch: 16, waitMs: 120_000, pollMs: 200 };

export type RotationPhase =
  "idle" | "delivering" | "activating" | "rewrapping" | "retiring" | "done" | "failed";

export interface RotationProgress {
  readonly running: boolean;
  readonly epoch: number;
  readonly phase: RotationPhase;
  readonly keksRewrapped: number;
  readonly keksTotal: number;
  /** Why it stopped, or what it waits for. */
  readonly detail: string;
}

export interface EpochView extends CmkEpochRecord {
  /** Project KEKs wrapped under it. */
  readonly projectKeks: number;
  readonly clusterCa: boolean;
  /** Members that should hold it and do not report it (staged: active members; active: those that may serve). */
  readonly lacking: readonly string[];
}

export interface MasterKeyRotationOptions {
  control: ControlPlane;
  barrier: Barrier;
  keeper: CmkEpochKeeper;
  clusterId: string;
  clock: Clock;
  random: RandomSource;
  log: (line: string) => void;
  tunables?: Partial<RotationTunables>;
}

const SHARES_MAX = 16;

export class MasterKeyRotation {
  readonly #o: MasterKeyRotationOptions;
  readonly #t: RotationTunables;
  #progress: RotationProgress = {
    running: false,
    epoch: 0,
    phase: "idle",
    keksRewrapped: 0,
    keksTotal: 0,
    detail: "",
  };
  #run: Promise<void> | undefined;
  #stopped = false;

  constructor(options: MasterKeyRotationOptions) {
    this.#o = options;
    this.#t = { ...ROTATION_DEFAULTS, ...options.tunables };
  }

  /**
   * Starts a rotation (or resumes the unfinished one) and returns once the new epoch is staged; the rest
   * runs in the background. With `shares` > 0, also returns k-of-n recovery shares of the new epoch
   * (share files' text, for the operator to hand to custodians; a new rotation only).
   */
  async rotate(req: { shares: number; threshold: number }): Promise<{
    epoch: number;
    resumed: boolean;
    recoveryShares: string[];
  }> {
    const { control, barrier } = this.#o;
    if (req.shares > SHARES_MAX) throw invalidArgument("recovery_shares", `at most ${SHARES_MAX}`);
    if (req.shares > 0 && (req.threshold < 1 || req.threshold > req.shares)) {
      throw invalidArgument("recovery_threshold", "must be 1..recovery_shares");
    }
    if (req.shares === 0 && req.threshold !== 0)
      throw invalidArgument("recovery_shares", "needed with a threshold");
    barrier.requireUnsealed();
    const state = await control.readCurrent();
    const epochs = state.cmkEpochs();
    const unfinished = epochs.find((e) => e.state === "staged") ?? epochs.find((e) => e.state === "active");
    const resuming = epochs.some((e) => e.state === "staged" || e.state === "retiring");
    if (resuming) {
      if (req.shares > 0) {
        throw new LockboxError(
          "FAILED_PRECONDITION",
          `a rotation to CMK epoch ${unfinished?.epoch} is unfinished: resume it without recovery shares first`,
        );
      }
      this.#start(unfinished!.epoch);
      return { epoch: unfinished!.epoch, resumed: true, recoveryShares: [] };
    }
    if (epochs.length === 0)
      throw new LockboxError("UNAVAILABLE", "the control state records no CMK epoch yet; retry");
    // Only an attested member can prove its platform to receive the new epoch (epoch-delivery.ts).
    const unattested = state
      .members()
      .filter(
        (m) =>
          m.id !== control.peerId && ["active", "down", "leaving"].includes(m.state) && m.akPublic === "",
      )
      .map((m) => m.id);
    if (unattested.length > 0) {
      throw new LockboxError(
        "FAILED_PRECONDITION",
        `members ${unattested.join(", ")} joined without attestation and cannot receive a new master key epoch; run the rotation on such a member, or attest it first`,
      );
    }
    const epoch = Math.max(...epochs.map((e) => e.epoch)) + 1;
    const key = this.#o.random.bytes(MASTER_KEY_BYTES);
    let shares: string[] = [];
    try {
      await this.#o.keeper.hold({ epoch, key });
      await control.proposeOrThrow({
        type: "cmk.epoch-stage",
        epoch,
        holder: control.peerId,
        atMs: this.#o.clock.now().getTime(),
      });
      if (req.shares > 0) {
        shares = makeRecoveryShares({
          cmk: key,
          clusterId: this.#o.clusterId,
          epoch,
          threshold: req.threshold,
          shares: req.shares,
          random: this.#o.random,
        }).map(encodeRecoveryShare);
      }
    } finally {
      zeroize(key);
    }
    this.#o.log(`cmk: rotation to CMK epoch ${epoch} staged`);
    this.#start(epoch);
    return { epoch, resumed: false, recoveryShares: shares };
  }

  /** This peer's rotation work (the control state's epochs tell the rest). */
  progress(): RotationProgress {
    return this.#progress;
  }

  /** Every epoch with what refers to it and who lacks it, after a ReadIndex. */
  async epochs(): Promise<EpochView[]> {
    const state = await this.#o.control.readCurrent();
    const keks = state.projectKeks();
    const ca = state.clusterCa();
    return state.cmkEpochs().map((e) => ({
      ...e,
      projectKeks: keks.filter((k) => k.epoch === e.epoch).length,
      clusterCa: ca?.epoch === e.epoch,
      lacking:
        e.state === "staged"
          ? state.cmkEpochLackers(e.epoch, ["active"])
          : e.state === "active" && e.holders.length > 0
            ? state.cmkEpochLackers(e.epoch, ["active", "down", "leaving"])
            : [],
    }));
  }

  /** Stops the background work at its next step (a later rotate call on any peer resumes it). */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#run?.catch(() => undefined);
  }

  #start(epoch: number): void {
    if (this.#run !== undefined) return;
    this.#set({ running: true, epoch, phase: "delivering", keksRewrapped: 0, keksTotal: 0, detail: "" });
    this.#run = this.#drive(epoch)
      .then(() => this.#set({ running: false, phase: "done", detail: "" }))
      .catch((e: unknown) => {
        const detail = e instanceof Error ? e.message : String(e);
        this.#set({ running: false, phase: "failed", detail });
        this.#o.log(`cmk: rotation to CMK epoch ${epoch} stopped: ${detail}; run it again to resume`);
      })
      .finally(() => (this.#run = undefined));
  }

  async #drive(epoch: number): Promise<void> {
    const { control, barrier } = this.#o;
    // 2-3: delivery, then activation.
    await this.#until("delivering", async () => {
      // After a ReadIndex: a follower's stage entry went through the leader and may not have applied
      // here yet when its proposal returned.
      const state = await control.readCurrent().catch((e: unknown) => {
        if (e instanceof LockboxError && e.code === "UNAVAILABLE") return undefined;
        throw e;
      });
      if (state === undefined) return false;
      const e = state.cmkEpochs().find((x) => x.epoch === epoch);
      if (e === undefined)
        throw new LockboxError("NOT_FOUND", `CMK epoch ${epoch} is not in the control state`);
      if (e.state !== "staged") return true;
      const lacking = state.cmkEpochLackers(epoch, ["active"]);
      this.#set({ detail: lacking.length > 0 ? `waiting for ${lacking.join(", ")} to hold it` : "" });
      return lacking.length === 0;
    });
    this.#set({ phase: "activating", detail: "" });
    await control.proposeOrThrow({ type: "cmk.epoch-activate", epoch });
    // This peer's keeper would do it on the change; re-wrapping must not wait for its next round.
    this.#o.keeper.kick();
    barrier.activate(epoch);
    // 4: re-wrap what older epochs still wrap. Another proposer (a concurrent rotation resumed elsewhere,
    // a KEK created a moment ago under the retiring epoch) may add or change KEKs: loop until none is left.
    this.#set({ phase: "rewrapping" });
    let rewrapped = 0;
    const rewrapAll = async (): Promise<void> => {
      for (;;) {
        // After a ReadIndex: every re-wrap answered so far has applied here too.
        const old = (await control.readCurrent()).projectKeks().filter((k) => k.epoch !== epoch);
        this.#set({ keksRewrapped: rewrapped, keksTotal: rewrapped + old.length });
        if (old.length === 0) return;
        if (this.#stopped) throw new LockboxError("UNAVAILABLE", "the peer is stopping");
        for (let i = 0; i < old.length; i += this.#t.rewrapBatch) {
          const batch = old.slice(i, i + this.#t.rewrapBatch);
          const done = await Promise.all(
            batch.map((k) => this.#rewrapKek(k.project, k.epoch, k.wrapped, epoch)),
          );
          rewrapped += done.filter(Boolean).length;
          this.#set({ keksRewrapped: rewrapped });
        }
      }
    };
    await rewrapAll();
    const ca = control.state.clusterCa();
    if (ca !== null && ca.epoch !== epoch) {
      const plain = barrier.unwrap(Buffer.from(ca.wrappedKey, "base64"), CA_KEY_BINDING);
      try {
        const wrappedKey = Buffer.from(barrier.wrap(plain, CA_KEY_BINDING)).toString("base64");
        await control.proposeOrThrow({ type: "ca.set", ca: { ...ca, wrappedKey, epoch } });
      } finally {
        zeroize(plain);
      }
    }
    // 5: retire.
    this.#set({ phase: "retiring" });
    for (const e of control.state.cmkEpochs().filter((x) => x.state === "retiring")) {
      await this.#until("retiring", async () => {
        // A peer that had not switched to the new epoch yet may have created a KEK under the retiring
        // one after the pass above (the state machine refuses retirement while one is left): wrap again.
        await rewrapAll();
        const { result } = await control.propose({
          type: "cmk.epoch-state",
          epoch: e.epoch,
          state: "retired",
        });
        if (result.ok) return true;
        if (result.code !== "failed-precondition")
          throw new LockboxError("FAILED_PRECONDITION", result.reason);
        this.#set({ detail: `epoch ${e.epoch}: ${result.reason}` });
        return false;
      });
      this.#o.log(`cmk: CMK epoch ${e.epoch} retired`);
    }
  }

  /** Re-wraps one KEK; false when it changed meanwhile (deleted, or re-wrapped by someone else). */
  async #rewrapKek(project: string, fromEpoch: number, wrapped: string, epoch: number): Promise<boolean> {
    const { barrier, control } = this.#o;
    const binding = kekBinding(project);
    const kek = barrier.unwrap(Buffer.from(wrapped, "base64"), binding);
    let rewrapped: string;
    try {
      rewrapped = Buffer.from(barrier.wrap(kek, binding)).toString("base64");
    } finally {
      zeroize(kek);
    }
    const { result } = await control.propose({
      type: "kek.rewrap",
      project,
      fromEpoch,
      epoch,
      wrapped: rewrapped,
    });
    if (result.ok) return true;
    if (result.code === "conflict" || result.code === "not-found") return false;
    throw new LockboxError("FAILED_PRECONDITION", `re-wrapping the KEK of ${project}: ${result.reason}`);
  }

  /** Polls `done` until it holds, at most waitMs; then fails with what it waited for. */
  async #until(phase: RotationPhase, done: () => boolean | Promise<boolean>): Promise<void> {
    const deadline = Date.now() + this.#t.waitMs;
    for (;;) {
      if (this.#stopped) throw new LockboxError("UNAVAILABLE", "the peer is stopping");
      if (await done()) return;
      if (Date.now() > deadline) {
        throw new LockboxError("UNAVAILABLE", `${phase}: ${this.#progress.detail || "timed out"}`);
      }
      await new Promise((r) => setTimeout(r, this.#t.pollMs));
    }
  }

  #set(p: Partial<RotationProgress>): void {
    this.#progress = { ...this.#progress, ...p };
  }
}
