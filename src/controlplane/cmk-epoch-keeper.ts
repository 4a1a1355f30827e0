/**
 * Keeps this peer's CMK epochs in line with the control state (DESIGN.md §5 "Rotation"). Every peer
 * runs one, on a timer and after every control-state change; a round does, in this order:
 *
 * 1. fetch, by attestation, every epoch the control state names (staged, active, retiring) that this
 *    peer lacks, from a member that holds it (src/attestation/epoch-delivery.ts), seal every epoch it
 *    now holds to its own TPM, and only then hold it in the barrier: a rotation's staged epoch, or, for
 *    a peer that was down or joined during a rotation, the epoch it missed;
 * 2. report each epoch it holds and the control state does not list it as holding (cmk.epoch-held),
 *    which is what activation and retirement wait for: a report always follows the sealed write;
 * 3. use the epoch the control state made active for new wraps (Barrier.activate), and re-wrap this
 *    peer's store canary under it;
 * 4. forget a retired epoch: canary first (so a restart still opens the store), then the sealed file
 *    without it, then the barrier.
 *
 * A failed step is logged (once per distinct message) and tried again next round; nothing here can
 * stop the peer. A peer whose CMK is not in a TPM (the development file protector) cannot persist a new
 * epoch, so it never reports holding one: a rotation waits for it and says so.
 */
import type { MasterKey } from "../crypto/master-key-provider.js";
import type { Barrier } from "../crypto/barrier.js";
import { zeroize } from "../crypto/random-source.js";
import type { CmkEpoch } from "../attestation/join-authority.js";
import { LockboxError } from "../errors.js";
import type { CmkEpochRecord } from "./control-records.js";
import type { ControlPlane } from "./control-plane.js";

export interface CmkEpochKeeperOptions {
  control: ControlPlane;
  barrier: Barrier;
  /** Fetches `epoch` from member `holderId` by attestation (the caller zeroes the key). */
  fetch?: (holderId: string, epoch: number) => Promise<CmkEpoch>;
  /** Seals exactly these epochs to this peer's TPM, replacing the sealed file; undefined without a TPM. */
  persist?: (keys: readonly MasterKey[]) => Promise<void>;
  /** Re-wraps this peer's store canary under the barrier's active epoch (peer-core.ts). */
  rewrapCanary: () => Promise<void>;
  log: (line: string) => void;
  intervalMs?: number;
}

const INTERVAL_MS = 500;

export class CmkEpochKeeper {
  readonly #o: CmkEpochKeeperOptions;
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<void> | undefined;
  #again = false;
  #stopped = false;
  #lastLogged = "";
  /** Rounds and hold() run one at a time: each rewrites the sealed file from what the barrier holds. */
  #lane: Promise<unknown> = Promise.resolve();

  constructor(options: CmkEpochKeeperOptions) {
    this.#o = options;
  }

  start(): void {
    if (this.#timer !== undefined || this.#stopped) return;
    this.#timer = setInterval(() => this.kick(), this.#o.intervalMs ?? INTERVAL_MS);
    this.#timer.unref();
    this.#o.control.state.onChange(() => this.kick());
    this.kick();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.#round?.catch(() => undefined);
  }

  /** Runs a round now, or right after the one running. */
  kick(): void {
    if (this.#stopped) return;
    if (this.#round !== undefined) {
      this.#again = true;
      return;
    }
    this.#round = this.round()
      .catch((e: unknown) => this.#note(`cmk: epoch keeper: ${e instanceof Error ? e.message : String(e)}`))
      .finally(() => {
        this.#round = undefined;
        if (this.#again) {
          this.#again = false;
          this.kick();
        }
      });
  }

  /**
   * Holds `key` (a rotation's new epoch, made on this peer) after sealing it, with every epoch held, to
   * this TPM. Throws FAILED_PRECONDITION without a TPM to seal it to.
   */
  hold(key: MasterKey): Promise<void> {
    return this.#exclusive(() => this.#hold(key));
  }

  async #hold(key: MasterKey): Promise<void> {
    if (this.#o.persist === undefined) {
      throw new LockboxError(
        "FAILED_PRECONDITION",
        "this peer's master key is not sealed to a TPM (development file protector): it cannot rotate the master key",
      );
    }
    const { barrier, control } = this.#o;
    if (barrier.heldEpochs.includes(key.epoch)) {
      // Left by a rotation that crashed between sealing its new epoch and staging it: the control state
      // never named it, so nothing is wrapped under it. Forget it, then seal the new key in its place.
      if (control.state.cmkEpochs().some((e) => e.epoch === key.epoch)) {
        throw new LockboxError("FAILED_PRECONDITION", `CMK epoch ${key.epoch} exists already`);
      }
      const active = control.state.cmkEpochs().find((e) => e.state === "active");
      if (active !== undefined && barrier.heldEpochs.includes(active.epoch)) barrier.activate(active.epoch);
      barrier.dropEpoch(key.epoch);
    }
    await this.#persist(barrier.heldEpochs, [key]);
    barrier.addEpoch(key.epoch, key.key);
  }

  /** One round (exported for tests that step it). */
  round(): Promise<void> {
    return this.#exclusive(() => this.#runRound());
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lane.then(fn, fn);
    this.#lane = run.catch(() => undefined);
    return run;
  }

  async #runRound(): Promise<void> {
    const { control, barrier } = this.#o;
    if (barrier.sealed) return;
    const state = control.state;
    const self = state.member(control.peerId);
    if (self === undefined || self.state === "removed" || self.state === "fenced") return;
    const epochs = state.cmkEpochs();
    barrier.announce(epochs.filter((e) => e.state !== "retired").map((e) => e.epoch));
    for (const e of epochs) {
      if (e.state !== "retired" && !barrier.heldEpochs.includes(e.epoch)) await this.#fetch(e);
    }
    for (const e of control.state.cmkEpochs()) {
      const tracked = e.state === "staged" || e.holders.length > 0;
      if (e.state === "retired" || !tracked || e.holders.includes(control.peerId)) continue;
      if (!barrier.heldEpochs.includes(e.epoch)) continue;
      const { result } = await control.propose({
        type: "cmk.epoch-held",
        epoch: e.epoch,
        member: control.peerId,
      });
      if (!result.ok) this.#note(`cmk: reporting epoch ${e.epoch} held was refused: ${result.reason}`);
    }
    const active = control.state.cmkEpochs().find((e) => e.state === "active");
    if (
      active !== undefined &&
      barrier.heldEpochs.includes(active.epoch) &&
      barrier.activeEpoch !== active.epoch
    ) {
      barrier.activate(active.epoch);
      this.#o.log(`cmk: wrapping under CMK epoch ${active.epoch} now`);
    }
    const retired = control.state
      .cmkEpochs()
      .filter(
        (e) =>
          e.state === "retired" && barrier.heldEpochs.includes(e.epoch) && e.epoch !== barrier.activeEpoch,
      );
    if (active !== undefined && barrier.activeEpoch === active.epoch) {
      await this.#o.rewrapCanary();
      if (retired.length > 0) {
        const keep = barrier.heldEpochs.filter((h) => !retired.some((r) => r.epoch === h));
        await this.#persist(keep, []);
        for (const r of retired) barrier.dropEpoch(r.epoch);
        this.#o.log(`cmk: forgot retired CMK epoch(s) ${retired.map((r) => r.epoch).join(", ")}`);
      }
    }
  }

  async #fetch(e: CmkEpochRecord): Promise<void> {
    const { control, barrier, fetch, persist } = this.#o;
    if (fetch === undefined || persist === undefined) {
      this.#note(
        `cmk: this peer lacks CMK epoch ${e.epoch} and cannot fetch it (its CMK is not sealed to a TPM)`,
      );
      return;
    }
    // Holders first; the founding epoch lists none, and every member that joined got it.
    const candidates = (
      e.holders.length > 0
        ? e.holders
        : control.state
            .members()
            .filter((m) => m.state === "active")
            .map((m) => m.id)
    ).filter((id) => id !== control.peerId);
    const problems: string[] = [];
    for (const holder of candidates) {
      let got: CmkEpoch;
      try {
        got = await fetch(holder, e.epoch);
      } catch (err) {
        problems.push(`${holder}: ${err instanceof Error ? err.message : String(err)}`);
        continue;
      }
      try {
        await this.#persist(barrier.heldEpochs, [got]);
        barrier.addEpoch(got.epoch, got.key);
      } finally {
        zeroize(got.key);
      }
      this.#o.log(
        `cmk: received CMK epoch ${e.epoch} from ${holder} by attestation and sealed it to this TPM`,
      );
      return;
    }
    this.#note(`cmk: could not fetch CMK epoch ${e.epoch}: ${problems.join("; ") || "no member holds it"}`);
  }

  /** Seals the held epochs `epochs` plus `extra` to this TPM (the sealed file is replaced atomically). */
  async #persist(epochs: readonly number[], extra: readonly MasterKey[]): Promise<void> {
    const { barrier, persist } = this.#o;
    if (persist === undefined) return;
    const keys: MasterKey[] = [];
    try {
      for (const e of epochs) {
        const k = barrier.releaseKey(e);
        if (k !== undefined) keys.push(k);
      }
      await persist([...keys, ...extra.map((k) => ({ epoch: k.epoch, key: k.key }))]);
    } finally {
      for (const k of keys) zeroize(k.key);
    }
  }

  #note(line: string): void {
    if (line === this.#lastLogged) return;
    this.#lastLogged = line;
    this.#o.log(line);
  }
}
