/**
 * The control state machine (DESIGN.md §3): members, PCR policies, the ring, CMK epochs, project KEKs,
 * client identities and the CA's revocation list, replicated by the peers' raft group. apply() decodes
 * an entry (control-command.ts), checks it against the current state, and only then changes anything:
 * a committed entry that fails a check is answered with a refusal value and changes nothing, because a
 * committed entry is a fact every replica applies, and no entry may stop a replica. apply() reads no
 * clock and no randomness: times come in the command, so every replica computes the same state.
 *
 * Reads are plain methods on the current (applied) state; a caller that must see every write committed
 * before its call starts first waits for a ReadIndex (control-plane.ts readCurrent()).
 */
import type { StateMachine } from "../../cluster/raft/driver/state-machine.js";
import { decodeCommand, type ControlCommand } from "./control-command.js";
import {
  CONTROL_LIMITS,
  type ClusterCaRecord,
  type CmkEpochRecord,
  type IdentityRecord,
  type MemberRecord,
  type MemberState,
  type PolicyRecord,
  type ProjectKekRecord,
  type QuoteClockRecord,
  type RevokedCertificate,
  type RingRecord,
  type RingUploadRecord,
} from "./control-records.js";
import { decodeControlSnapshot, encodeControlSnapshot, type ControlImage } from "./control-snapshot.js";

export type ControlRefusalCode =
  "malformed" | "not-found" | "already-exists" | "conflict" | "failed-precondition" | "limit";

/** What applying one entry answered: the change it made, or why it made none. */
export type ControlResult =
  { ok: true; value?: unknown } | { ok: false; code: ControlRefusalCode; reason: string };

/** State changes a member may make, and the only ones (removed is final: its id is never reused). */
const TRANSITIONS: Readonly<Record<MemberState, readonly MemberState[]>> = {
  enrolled: ["joining", "removed"],
  // A joining member becomes active only by member.confirm (the joiner proved it holds the CMK);
  // back to enrolled when it never confirms (its certificate is revoked), so it may join again.
  joining: ["enrolled", "removed"],
  active: ["down", "fenced", "leaving", "removed"],
  down: ["active", "fenced", "leaving", "removed"],
  fenced: ["joining", "active", "removed"],
  leaving: ["active", "removed"],
  removed: [],
};

/** A change the state machine made, for whoever mirrors state outside it (transport addresses, caches). */
export type ControlChange =
  | { kind: "member"; member: MemberRecord }
  | { kind: "revoked"; serial: string }
  | { kind: "identity"; name: string }
  | { kind: "restored" };

export class ControlState implements StateMachine<ControlResult> {
  #members = new Map<string, MemberRecord>();
  #policies = new Map<string, PolicyRecord>();
  #ring: RingRecord | null = null;
  /** A ring arriving in ring.part commands (at most one, the newest version started). */
  #ringUpload: RingUploadRecord | null = null;
  #epochs = new Map<number, CmkEpochRecord>();
  #keks = new Map<string, ProjectKekRecord>();
  #identities = new Map<string, IdentityRecord>();
  #revoked = new Map<string, RevokedCertificate>();
  #ca: ClusterCaRecord | null = null;
  #appliedIndex = 0;
  readonly #listeners: ((change: ControlChange) => void)[] = [];

  /** Calls `listener` after every change (in apply order, and once after a restore). */
  onChange(listener: (change: ControlChange) => void): void {
    this.#listeners.push(listener);
  }

  // ---- StateMachine -----------------------------------------------------------------------------

  apply(data: Uint8Array, index: number): ControlResult {
    this.#appliedIndex = index;
    const decoded = decodeCommand(data);
    if (!decoded.ok) return refuse("malformed", decoded.reason);
    return this.#apply(decoded.command);
  }

  snapshot(): Uint8Array {
    return encodeControlSnapshot(this.#image());
  }

  restore(bytes: Uint8Array): void {
    const image = decodeControlSnapshot(bytes); // throws before anything changes
    this.#members = new Map(image.members.map((m) => [m.id, m]));
    this.#policies = new Map(image.policies.map((p) => [p.name, p]));
    this.#ring = image.ring;
    this.#ringUpload = image.ringUpload;
    this.#epochs = new Map(image.cmkEpochs.map((e) => [e.epoch, e]));
    this.#keks = new Map(image.projectKeks.map((k) => [k.project, k]));
    this.#identities = new Map(image.identities.map((i) => [i.name, i]));
    this.#revoked = new Map(image.revoked.map((r) => [r.serial, r]));
    this.#ca = image.ca;
    this.#emit({ kind: "restored" });
  }

  checkSnapshot(bytes: Uint8Array): void {
    decodeControlSnapshot(bytes);
  }

  // ---- reads ------------------------------------------------------------------------------------

  /** Index of the last entry applied (0 after a restore until the next entry). */
  get appliedIndex(): number {
    return this.#appliedIndex;
  }
  member(id: string): MemberRecord | undefined {
    return this.#members.get(id);
  }
  members(): MemberRecord[] {
    return [...this.#members.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  }
  policy(name: string): PolicyRecord | undefined {
    return this.#policies.get(name);
  }
  policies(): PolicyRecord[] {
    return [...this.#policies.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  }
  ring(): RingRecord | null {
    return this.#ring;
  }
  cmkEpochs(): CmkEpochRecord[] {
    return [...this.#epochs.values()].sort((a, b) => a.epoch - b.epoch);
  }
  /** Members in one of `states` that are not holders of CMK epoch `epoch`, sorted. */
  cmkEpochLackers(epoch: number, states: readonly MemberState[]): string[] {
    const holders = this.#epochs.get(epoch)?.holders ?? [];
    return this.members()
      .filter((m) => states.includes(m.state) && !holders.includes(m.id))
      .map((m) => m.id);
  }
  projectKek(project: string): ProjectKekRecord | undefined {
    return this.#keks.get(project);
  }
  projectKeks(): ProjectKekRecord[] {
    return [...this.#keks.values()];
  }
  identity(name: string): IdentityRecord | undefined {
    return this.#identities.get(name);
  }
  identities(): IdentityRecord[] {
    return [...this.#identities.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  }
  revocation(serial: string): RevokedCertificate | undefined {
    return this.#revoked.get(serial);
  }
  revokedCertificates(): RevokedCertificate[] {
    return [...this.#revoked.values()];
  }
  clusterCa(): ClusterCaRecord | null {
    return this.#ca;
  }
  /** Whether this replica holds any state yet (a peer waiting to be added holds none). */
  get empty(): boolean {
    return this.#members.size === 0;
  }

  // ---- apply --------------------------------------------------------------------------------------

  #apply(c: ControlCommand): ControlResult {
    switch (c.type) {
      case "member.enroll": {
        if (this.#members.has(c.id))
          return refuse("already-exists", `member ${c.id} exists (ids are never reused)`);
        if (this.#members.size >= CONTROL_LIMITS.members) return refuse("limit", "too many members");
        // Only the founder enrolls without a join token; any other member without one could never be
        // made to prove it is the machine the operator enrolled.
        if (c.joinTokenSha256 === "" && c.founder !== true) {
          return refuse("malformed", "an enrollment needs a join token (only the founder's own has none)");
        }
        if (c.joinTokenSha256 !== "" && c.founder === true) {
          return refuse("malformed", "the founder's own enrollment has no join token");
        }
        if (c.policy !== "" && !this.#policies.has(c.policy)) {
          return refuse("not-found", `PCR policy ${c.policy} does not exist`);
        }
        for (const m of this.#members.values()) {
          if (m.state === "removed") continue;
          if (c.ekPublicKey !== "" && m.ekPublicKey === c.ekPublicKey) {
            return refuse("already-exists", `this EK public key is enrolled as member ${m.id}`);
          }
          if (c.ekCertificate !== "" && m.ekCertificate === c.ekCertificate) {
            return refuse("already-exists", `this EK certificate is enrolled as member ${m.id}`);
          }
        }
        return this.#putMember({
          id: c.id,
          address: c.address,
          zone: c.zone,
          weight: c.weight,
          state: "enrolled",
          policy: c.policy,
          ekPublicKey: c.ekPublicKey,
          ekCertificate: c.ekCertificate,
          certificateSerial: "",
          joinTokenSha256: c.joinTokenSha256,
          joinTokenExpiresAtMs: c.joinTokenExpiresAtMs,
          enrolledAtMs: c.atMs,
          stateChangedAtMs: c.atMs,
          reason: "",
          akPublic: "",
          lastQuoteClock: null,
        });
      }
      case "member.add-unattested": {
        if (this.#members.has(c.id))
          return refuse("already-exists", `member ${c.id} exists (ids are never reused)`);
        if (this.#members.size >= CONTROL_LIMITS.members) return refuse("limit", "too many members");
        if (this.#revoked.has(c.certificateSerial)) return refuse("conflict", "that certificate is revoked");
        if (this.#serialHolder(c.certificateSerial) !== undefined) {
          return refuse("conflict", "that certificate belongs to another member");
        }
        return this.#putMember({
          id: c.id,
          address: c.address,
          zone: c.zone,
          weight: c.weight,
          state: "active",
          policy: "",
          ekPublicKey: "",
          ekCertificate: "",
          certificateSerial: c.certificateSerial,
          joinTokenSha256: "",
          joinTokenExpiresAtMs: 0,
          enrolledAtMs: c.atMs,
          stateChangedAtMs: c.atMs,
          reason: "added without attestation",
          akPublic: "",
          lastQuoteClock: null,
        });
      }
      case "member.admit":
        return this.#admit(c);
      case "member.confirm":
        return this.#confirm(c);
      case "member.attested": {
        const m = this.#members.get(c.id);
        if (m === undefined) return refuse("not-found", `no member ${c.id}`);
        if (m.state !== "active" && m.state !== "down" && m.state !== "leaving") {
          return refuse(
            "failed-precondition",
            `member ${c.id} is ${m.state}; a passed re-quote does not change that`,
          );
        }
        if (!clockAfter(c.quoteClock, m.lastQuoteClock)) {
          return refuse("conflict", `the quote clock of ${c.id} does not move forward (a replay)`);
        }
        return this.#putMember({
          ...m,
          state: m.state === "down" ? "active" : m.state,
          lastQuoteClock: c.quoteClock,
          stateChangedAtMs: m.state === "down" ? c.atMs : m.stateChangedAtMs,
          reason: m.state === "down" ? "answered a re-quote" : m.reason,
        });
      }
      case "member.reenroll":
        return this.#reenroll(c);
      case "member.transition":
        return this.#transition(c);
      case "member.address": {
        const m = this.#members.get(c.id);
        if (m === undefined) return refuse("not-found", `no member ${c.id}`);
        if (m.state === "removed") return refuse("failed-precondition", `member ${c.id} was removed`);
        return this.#putMember({ ...m, address: c.address });
      }
      case "policy.put": {
        if (!this.#policies.has(c.name) && this.#policies.size >= CONTROL_LIMITS.policies) {
          return refuse("limit", "too many PCR policies");
        }
        this.#policies.set(c.name, { name: c.name, policy: c.policy, updatedAtMs: c.atMs });
        return { ok: true };
      }
      case "policy.remove": {
        if (!this.#policies.has(c.name)) return refuse("not-found", `no PCR policy ${c.name}`);
        const user = [...this.#members.values()].find((m) => m.state !== "removed" && m.policy === c.name);
        if (user !== undefined)
          return refuse("failed-precondition", `member ${user.id} uses policy ${c.name}`);
        this.#policies.delete(c.name);
        return { ok: true };
      }
      case "ring.put": {
        const current = this.#ring?.version ?? 0;
        if (c.ring.version <= current) {
          return refuse("conflict", `ring version ${c.ring.version} is not newer than ${current}`);
        }
        this.#ring = c.ring;
        if (this.#ringUpload !== null && this.#ringUpload.version <= c.ring.version) this.#ringUpload = null;
        return { ok: true };
      }
      case "ring.part": {
        // A ring larger than one command, in parts of one version, in order: part 0 starts an upload
        // (dropping any other: a new leader starts its own); the last part commits the ring whole.
        const current = this.#ring?.version ?? 0;
        if (c.version <= current) {
          return refuse("conflict", `ring version ${c.version} is not newer than ${current}`);
        }
        const upload = this.#ringUpload;
        if (
          c.index > 0 &&
          (upload?.version !== c.version || upload.count !== c.count || upload.parts.length !== c.index)
        ) {
          return refuse(
            "conflict",
            `ring version ${c.version} part ${c.index} of ${c.count} does not follow the upload in progress`,
          );
        }
        const parts = c.index === 0 ? [c.bytes] : [...upload!.parts, c.bytes];
        if (parts.length < c.count) {
          this.#ringUpload = { version: c.version, count: c.count, parts };
          return { ok: true };
        }
        this.#ringUpload = null;
        this.#ring = { version: c.version, bytes: parts.join("") };
        return { ok: true };
      }
      case "cmk.epoch-add": {
        if (this.#epochs.has(c.epoch)) return refuse("already-exists", `CMK epoch ${c.epoch} exists`);
        const newest = Math.max(0, ...this.#epochs.keys());
        if (c.epoch <= newest) return refuse("conflict", `CMK epoch ${c.epoch} is not above ${newest}`);
        if (this.#epochs.size >= CONTROL_LIMITS.cmkEpochs) return refuse("limit", "too many CMK epochs");
        // The newest epoch is the active one; the one before it starts retiring.
        this.#retireActive();
        this.#epochs.set(c.epoch, { epoch: c.epoch, state: "active", createdAtMs: c.atMs, holders: [] });
        return { ok: true };
      }
      case "cmk.epoch-stage": {
        if (this.#epochs.has(c.epoch)) return refuse("already-exists", `CMK epoch ${c.epoch} exists`);
        const newest = Math.max(0, ...this.#epochs.keys());
        if (c.epoch <= newest) return refuse("conflict", `CMK epoch ${c.epoch} is not above ${newest}`);
        const busy = [...this.#epochs.values()].find((e) => e.state === "staged" || e.state === "retiring");
        if (busy !== undefined) {
          return refuse(
            "failed-precondition",
            `CMK epoch ${busy.epoch} is ${busy.state}: a rotation is in progress`,
          );
        }
        if (this.#epochs.size >= CONTROL_LIMITS.cmkEpochs) return refuse("limit", "too many CMK epochs");
        const holder = this.#members.get(c.holder);
        if (holder === undefined || holder.state === "removed")
          return refuse("not-found", `no member ${c.holder}`);
        this.#epochs.set(c.epoch, {
          epoch: c.epoch,
          state: "staged",
          createdAtMs: c.atMs,
          holders: [c.holder],
        });
        return { ok: true };
      }
      case "cmk.epoch-held": {
        const e = this.#epochs.get(c.epoch);
        if (e === undefined) return refuse("not-found", `no CMK epoch ${c.epoch}`);
        if (e.state === "retired") return refuse("conflict", `CMK epoch ${c.epoch} is retired`);
        const m = this.#members.get(c.member);
        if (m === undefined || m.state === "removed") return refuse("not-found", `no member ${c.member}`);
        if (e.holders.includes(c.member)) return { ok: true };
        this.#epochs.set(c.epoch, { ...e, holders: [...e.holders, c.member].sort() });
        return { ok: true };
      }
      case "cmk.epoch-activate": {
        const e = this.#epochs.get(c.epoch);
        if (e === undefined) return refuse("not-found", `no CMK epoch ${c.epoch}`);
        if (e.state === "active") return { ok: true };
        if (e.state !== "staged") return refuse("conflict", `CMK epoch ${c.epoch} is ${e.state}, not staged`);
        // A wrap under an epoch some active member lacks would be unreadable there: all of them first.
        const lacking = this.cmkEpochLackers(c.epoch, ["active"]);
        if (lacking.length > 0) {
          return refuse(
            "failed-precondition",
            `members ${lacking.join(", ")} do not hold CMK epoch ${c.epoch} yet`,
          );
        }
        this.#retireActive();
        this.#epochs.set(c.epoch, { ...e, state: "active" });
        return { ok: true };
      }
      case "cmk.epoch-state": {
        const e = this.#epochs.get(c.epoch);
        if (e === undefined) return refuse("not-found", `no CMK epoch ${c.epoch}`);
        if (c.state === "active") return refuse("conflict", "an epoch becomes active only by cmk.epoch-add");
        if (c.state === "staged") return refuse("conflict", "an epoch is staged only by cmk.epoch-stage");
        if (e.state === "retired") return refuse("conflict", `CMK epoch ${c.epoch} is retired`);
        if (c.state === "retired") {
          if (e.state === "active")
            return refuse("failed-precondition", `CMK epoch ${c.epoch} is the active one`);
          const user = this.#epochUser(c.epoch);
          if (user !== undefined)
            return refuse("failed-precondition", `CMK epoch ${c.epoch} still wraps ${user}`);
          // A member that may serve again must hold the active epoch before the old one is forgotten.
          const active = this.cmkEpochs().find((x) => x.state === "active");
          const lacking =
            active === undefined || active.holders.length === 0
              ? []
              : this.cmkEpochLackers(active.epoch, ["active", "down", "leaving"]);
          if (lacking.length > 0) {
            return refuse(
              "failed-precondition",
              `members ${lacking.join(", ")} do not hold the active CMK epoch ${active!.epoch} yet`,
            );
          }
        }
        this.#epochs.set(c.epoch, { ...e, state: c.state });
        return { ok: true };
      }
      case "kek.create": {
        const existing = this.#keks.get(c.project);
        if (existing !== undefined) return { ok: true, value: existing };
        const refusal = this.#usableEpoch(c.epoch);
        if (refusal !== null) return refusal;
        if (this.#keks.size >= CONTROL_LIMITS.projectKeks) return refuse("limit", "too many project KEKs");
        const kek: ProjectKekRecord = { project: c.project, epoch: c.epoch, wrapped: c.wrapped };
        this.#keks.set(c.project, kek);
        return { ok: true, value: kek };
      }
      case "kek.rewrap": {
        const existing = this.#keks.get(c.project);
        if (existing === undefined) return refuse("not-found", `project ${c.project} has no KEK`);
        if (existing.epoch !== c.fromEpoch) {
          return refuse(
            "conflict",
            `the KEK of ${c.project} is wrapped under epoch ${existing.epoch}, not ${c.fromEpoch}`,
          );
        }
        const refusal = this.#usableEpoch(c.epoch);
        if (refusal !== null) return refusal;
        const kek: ProjectKekRecord = { project: c.project, epoch: c.epoch, wrapped: c.wrapped };
        this.#keks.set(c.project, kek);
        return { ok: true, value: kek };
      }
      case "kek.delete":
        if (!this.#keks.delete(c.project)) return refuse("not-found", `project ${c.project} has no KEK`);
        return { ok: true };
      case "ca.set": {
        if (this.#ca !== null && this.#ca.certificatePem !== c.ca.certificatePem) {
          return refuse("conflict", "the cluster CA is set; only its key's wrapping may change");
        }
        const refusal = this.#usableEpoch(c.ca.epoch);
        if (refusal !== null) return refusal;
        this.#ca = c.ca;
        return { ok: true };
      }
      case "identity.issue":
        return this.#issue(c);
      case "identity.revoke": {
        const identity = this.#identities.get(c.name);
        if (identity === undefined) return refuse("not-found", `no identity ${c.name}`);
        const fresh = identity.serials.filter((s) => !this.#revoked.has(s.serial));
        if (this.#revoked.size + fresh.length > CONTROL_LIMITS.revokedCertificates) {
          return refuse("limit", "the revocation list is full");
        }
        this.#identities.set(c.name, { ...identity, revoked: true });
        for (const s of fresh) this.#revoke(s.serial, c.name, c.reason, c.atMs);
        this.#emit({ kind: "identity", name: c.name });
        return { ok: true, value: { revokedSerials: fresh.map((s) => s.serial) } };
      }
      case "certificate.revoke": {
        if (this.#revoked.has(c.serial)) return { ok: true };
        if (this.#revoked.size >= CONTROL_LIMITS.revokedCertificates) {
          return refuse("limit", "the revocation list is full");
        }
        this.#revoke(c.serial, c.subject, c.reason, c.atMs);
        return { ok: true };
      }
    }
  }

  #transition(c: Extract<ControlCommand, { type: "member.transition" }>): ControlResult {
    const m = this.#members.get(c.id);
    if (m === undefined) return refuse("not-found", `no member ${c.id}`);
    if (m.state !== c.from) return refuse("conflict", `member ${c.id} is ${m.state}, not ${c.from}`);
    if (!TRANSITIONS[m.state].includes(c.to)) {
      return refuse("failed-precondition", `member ${c.id} cannot go from ${m.state} to ${c.to}`);
    }
    let serial = m.certificateSerial;
    // An admission that was never confirmed is undone: its certificate is revoked, its AK forgotten.
    const joinUndone = m.state === "joining" && c.to === "enrolled";
    const toActiveByJoin = c.to === "active" && m.state === "fenced";
    if (toActiveByJoin && c.certificateSerial !== "") {
      if (this.#revoked.has(c.certificateSerial)) return refuse("conflict", "that certificate is revoked");
      const holder = this.#serialHolder(c.certificateSerial);
      if (holder !== undefined && holder !== c.id) {
        return refuse("conflict", "that certificate belongs to another member");
      }
      serial = c.certificateSerial;
    } else if (joinUndone) {
      // The undo names the admission it undoes: proposed for one admission, it must not apply to a
      // retried admission committed in between (that would revoke the fresh certificate).
      if (c.certificateSerial === "") {
        return refuse("malformed", "undoing a join names the certificate serial of the admission it undoes");
      }
      if (c.certificateSerial !== m.certificateSerial) {
        return refuse("conflict", `member ${c.id} holds another admission than the one to undo`);
      }
    } else if (c.certificateSerial !== "") {
      return refuse(
        "malformed",
        "certificateSerial is only for a member becoming active after a join or an undone join",
      );
    }
    // A superseded certificate, and a removed member's, are revoked: no member can use them again.
    if (joinUndone) serial = "";
    const retire = m.certificateSerial !== "" && (serial !== m.certificateSerial || c.to === "removed");
    if (
      retire &&
      !this.#revoked.has(m.certificateSerial) &&
      this.#revoked.size >= CONTROL_LIMITS.revokedCertificates
    ) {
      return refuse("limit", "the revocation list is full");
    }
    if (retire) this.#revoke(m.certificateSerial, `peer ${m.id}`, c.reason || `member ${c.to}`, c.atMs);
    // The join token is one-time: a join that starts consumes it.
    const consumed = c.to === "joining" || c.to === "removed";
    return this.#putMember({
      ...m,
      state: c.to,
      certificateSerial: serial,
      joinTokenSha256: consumed ? "" : m.joinTokenSha256,
      joinTokenExpiresAtMs: consumed ? 0 : m.joinTokenExpiresAtMs,
      akPublic: joinUndone ? "" : m.akPublic,
      stateChangedAtMs: c.atMs,
      reason: c.reason,
    });
  }

  /**
   * The attested join's first commit, all or nothing: the member becomes joining with the certificate the
   * join issued (a superseded one is revoked: a retried join, or one after a leader change, replaces the
   * admission before it), its activated AK and quote clock are recorded, its join token is spent. It is
   * not active, not in raft, not re-quoted until member.confirm: a verifier that dies after this entry
   * leaves no member that never got its key, only a joining one that confirms or is undone
   * (leader-duties.ts). A removed member never comes back.
   */
  #admit(c: Extract<ControlCommand, { type: "member.admit" }>): ControlResult {
    const m = this.#members.get(c.id);
    if (m === undefined) return refuse("not-found", `no member ${c.id}`);
    if (m.state !== c.from) return refuse("conflict", `member ${c.id} is ${m.state}, not ${c.from}`);
    if (m.state === "removed" || m.state === "leaving") {
      return refuse("failed-precondition", `member ${c.id} is ${m.state} and cannot join`);
    }
    if (!clockAfter(c.quoteClock, m.lastQuoteClock)) {
      return refuse("conflict", `the quote clock of ${c.id} does not move forward (a replay)`);
    }
    if (this.#revoked.has(c.certificateSerial)) return refuse("conflict", "that certificate is revoked");
    const holder = this.#serialHolder(c.certificateSerial);
    if (holder !== undefined && holder !== c.id)
      return refuse("conflict", "that certificate belongs to another member");
    const retire = m.certificateSerial !== "" && m.certificateSerial !== c.certificateSerial;
    if (retire && this.#revoked.size >= CONTROL_LIMITS.revokedCertificates) {
      return refuse("limit", "the revocation list is full");
    }
    if (retire) this.#revoke(m.certificateSerial, `peer ${m.id}`, "superseded by a new join", c.atMs);
    return this.#putMember({
      ...m,
      state: "joining",
      certificateSerial: c.certificateSerial,
      joinTokenSha256: "",
      joinTokenExpiresAtMs: 0,
      akPublic: c.akPublic,
      lastQuoteClock: c.quoteClock,
      stateChangedAtMs: c.atMs,
      reason: "attested; waiting for the joiner to confirm it sealed the master key",
    });
  }

  /**
   * The attested join's second commit: the joiner proved it holds the CMK (it sealed it first) for the
   * admission that issued `certificateSerial`; the member becomes active. Idempotent for that admission;
   * a stale one (undone, or replaced by a later join) is refused and changes nothing.
   */
  #confirm(c: Extract<ControlCommand, { type: "member.confirm" }>): ControlResult {
    const m = this.#members.get(c.id);
    if (m === undefined) return refuse("not-found", `no member ${c.id}`);
    if (m.certificateSerial !== c.certificateSerial) {
      return refuse("conflict", `the admission of ${c.id} with that certificate is no longer current`);
    }
    if (m.state === "active") return { ok: true, value: m };
    if (m.state !== "joining") {
      return refuse("failed-precondition", `member ${c.id} is ${m.state}, not joining`);
    }
    return this.#putMember({ ...m, state: "active", stateChangedAtMs: c.atMs, reason: "attested" });
  }

  #issue(c: Extract<ControlCommand, { type: "identity.issue" }>): ControlResult {
    const existing = this.#identities.get(c.name);
    if (existing?.revoked === true) return refuse("failed-precondition", `identity ${c.name} is revoked`);
    if (this.#revoked.has(c.issued.serial) || this.#serialUsed(c.issued.serial)) {
      return refuse("conflict", `certificate serial ${c.issued.serial} is already used`);
    }
    if (existing === undefined && this.#identities.size >= CONTROL_LIMITS.identities) {
      return refuse("limit", "too many identities");
    }
    // Expired certificates need no entry: dropping them keeps an often re-issued identity bounded.
    const live = (existing?.serials ?? []).filter((s) => s.notAfterMs > c.atMs);
    if (live.length >= CONTROL_LIMITS.serialsPerIdentity) {
      return refuse("limit", `identity ${c.name} has ${live.length} live certificates; revoke some first`);
    }
    this.#identities.set(c.name, {
      name: c.name,
      role: c.role,
      projects: [...c.projects],
      serials: [...live, c.issued],
      revoked: false,
      createdAtMs: existing?.createdAtMs ?? c.atMs,
    });
    this.#emit({ kind: "identity", name: c.name });
    return { ok: true };
  }

  /**
   * A member's new TPM after a recovery: EK, AK and quote clock replaced together. Only a member that
   * joined by attestation (it has a policy) and may serve (active, down or fenced); the EK may not be
   * another member's. The clock starts over (a new TPM's clock has no relation to the old one's).
   */
  #reenroll(c: Extract<ControlCommand, { type: "member.reenroll" }>): ControlResult {
    const m = this.#members.get(c.id);
    if (m === undefined) return refuse("not-found", `no member ${c.id}`);
    if (m.state !== "active" && m.state !== "down" && m.state !== "fenced") {
      return refuse(
        "failed-precondition",
        `member ${c.id} is ${m.state}; only a joined member is re-enrolled`,
      );
    }
    if (m.policy === "" || !this.#policies.has(m.policy)) {
      return refuse("failed-precondition", `member ${c.id} has no PCR policy to check its new TPM against`);
    }
    for (const other of this.#members.values()) {
      if (other.id === c.id || other.state === "removed") continue;
      if (other.ekPublicKey === c.ekPublicKey)
        return refuse("already-exists", `this EK public key is enrolled as member ${other.id}`);
      if (c.ekCertificate !== "" && other.ekCertificate === c.ekCertificate)
        return refuse("already-exists", `this EK certificate is enrolled as member ${other.id}`);
    }
    return this.#putMember({
      ...m,
      ekPublicKey: c.ekPublicKey,
      ekCertificate: c.ekCertificate,
      akPublic: c.akPublic,
      lastQuoteClock: c.quoteClock,
      reason: c.reason,
    });
  }

  #putMember(m: MemberRecord): ControlResult {
    this.#members.set(m.id, m);
    this.#emit({ kind: "member", member: m });
    return { ok: true, value: m };
  }

  #revoke(serial: string, subject: string, reason: string, atMs: number): void {
    this.#revoked.set(serial, {
      serial,
      subject: subject.slice(0, 128),
      reason: reason.slice(0, 256),
      revokedAtMs: atMs,
    });
    this.#emit({ kind: "revoked", serial });
  }

  #serialHolder(serial: string): string | undefined {
    for (const m of this.#members.values()) if (m.certificateSerial === serial) return m.id;
    return undefined;
  }

  #serialUsed(serial: string): boolean {
    if (this.#serialHolder(serial) !== undefined) return true;
    for (const i of this.#identities.values()) if (i.serials.some((s) => s.serial === serial)) return true;
    return false;
  }

  /** A wrap may use only a known epoch that is active or retiring. */
  #usableEpoch(epoch: number): ControlResult | null {
    const e = this.#epochs.get(epoch);
    if (e === undefined) return refuse("failed-precondition", `CMK epoch ${epoch} is not known`);
    if (e.state === "retired") return refuse("failed-precondition", `CMK epoch ${epoch} is retired`);
    // Not every member holds a staged epoch yet: a KEK wrapped under it would be unreadable there.
    if (e.state === "staged") return refuse("failed-precondition", `CMK epoch ${epoch} is not active yet`);
    return null;
  }

  #retireActive(): void {
    for (const e of this.#epochs.values()) {
      if (e.state === "active") this.#epochs.set(e.epoch, { ...e, state: "retiring" });
    }
  }

  #epochUser(epoch: number): string | undefined {
    for (const k of this.#keks.values()) if (k.epoch === epoch) return `the KEK of project ${k.project}`;
    if (this.#ca?.epoch === epoch) return "the cluster CA key";
    return undefined;
  }

  #image(): ControlImage {
    return {
      members: this.members(),
      policies: this.policies(),
      ring: this.#ring,
      ringUpload: this.#ringUpload,
      cmkEpochs: this.cmkEpochs(),
      projectKeks: [...this.#keks.values()].sort((a, b) => (a.project < b.project ? -1 : 1)),
      identities: this.identities(),
      revoked: [...this.#revoked.values()].sort((a, b) => (a.serial < b.serial ? -1 : 1)),
      ca: this.#ca,
    };
  }

  #emit(change: ControlChange): void {
    for (const l of this.#listeners) {
      // A mirror that fails must not stop the replica: the state itself is already changed and correct.
      try {
        l(change);
      } catch {
        /* the listener reports its own failures */
      }
    }
  }
}

/** Whether quote clock `next` is later than `last` (a later boot, or the same boot later). */
function clockAfter(next: QuoteClockRecord, last: QuoteClockRecord | null): boolean {
  if (last === null) return true;
  if (next.resetCount !== last.resetCount) return next.resetCount > last.resetCount;
  if (next.restartCount !== last.restartCount) return next.restartCount > last.restartCount;
  return BigInt(next.clock) > BigInt(last.clock);
}

function refuse(code: ControlRefusalCode, reason: string): ControlResult {
  return { ok: false, code, reason };
}
