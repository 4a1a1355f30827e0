/**
 * The peer's side of re-enrolment onto a new TPM (src/attestation/reenrolment.ts): at start, a record
 * `lockbox recover` left in the peer's directory is checked (this cluster and peer, its MAC under the
 * CMK the shares rebuilt, this TPM's AK being the recorded one) and committed through the control
 * state (member.reenroll), then audited and removed. A record that fails a check is refused, audited,
 * and left in place for the operator; it changes nothing.
 *
 * While a checked record waits to commit (no leader yet: every peer of a cluster restarts after a
 * recovery), this peer answers no re-quote: the leader marks it down, which a later good quote
 * undoes, rather than fencing it for quoting with an AK the control state does not know yet.
 */
import type { AuditEventInput } from "../audit/audit-log.js";
import {
  fingerprint,
  readReenrolment,
  removeReenrolment,
  currentAkPublic,
  verifyReenrolmentMac,
  type ReenrolmentRecord,
} from "../attestation/reenrolment.js";
import type { ControlPlane } from "../controlplane/control-plane.js";
import type { Barrier } from "../crypto/barrier.js";
import { zeroize } from "../crypto/random-source.js";
import { isLockboxError } from "../errors.js";
import type { PeerTpm } from "../sealing/peer-tpm.js";

export interface PendingReenrolmentOptions {
  dir: string;
  peerId: string;
  clusterId: string;
  control: ControlPlane;
  barrier: Barrier;
  tpm: PeerTpm | undefined;
  audit: { append(event: AuditEventInput): Promise<unknown> };
  nowMs(): number;
  log(line: string): void;
  /** Between two attempts to commit while the control state has no leader. */
  retryMs?: number;
}

export interface PendingReenrolment {
  /** Why this peer answers no re-quote now (a checked re-enrolment waits to commit), or null. */
  pending(): string | null;
  stop(): void;
}

const RETRY_MS = 500;
const WAITING = "a re-enrolment onto a new TPM waits to commit";
const OPERATION = "Reenroll";

export async function startPendingReenrolment(o: PendingReenrolmentOptions): Promise<PendingReenrolment> {
  const none: PendingReenrolment = { pending: () => null, stop: () => undefined };
  let found;
  try {
    found = await readReenrolment(o.dir);
  } catch (err) {
    o.log(`re-enrolment: ${err instanceof Error ? err.message : String(err)}`);
    return none;
  }
  if (found === undefined) return none;
  const { record, mac } = found;
  const audit = async (outcome: "ok" | "denied", status: string, detail: string): Promise<void> => {
    await o.audit
      .append({ identity: o.peerId, operation: OPERATION, outcome, status, detail })
      .catch((e: unknown) => o.log(`re-enrolment: audit write failed (${String(e)}): ${detail}`));
  };
  let waiting: string | null = WAITING;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let lastWait = "";
  const later = (step: () => Promise<void>): void => {
    if (!stopped) timer = setTimeout(() => void step(), o.retryMs ?? RETRY_MS);
  };
  const attempt = async (): Promise<void> => {
    try {
      const done = await commit(o, record);
      waiting = null;
      if (done === "committed") {
        await audit(
          "ok",
          "OK",
          `peer ${o.peerId} re-enrolled onto a new TPM by recovery authority: EK sha256:${fingerprint(record.ekPublicKey)}` +
            `${record.ekCertificate !== "" ? " (certificate chained to the manufacturer CA)" : " (public key)"}, ` +
            `AK sha256:${fingerprint(record.akPublic)}, quote met policy ${record.policy}`,
        );
        o.log(`re-enrolment: ${o.peerId} now attests with its new TPM`);
      }
      await removeReenrolment(o.dir).catch((e: unknown) => o.log(`re-enrolment: ${String(e)}`));
    } catch (err) {
      if (isLockboxError(err, "UNAVAILABLE")) {
        later(attempt);
        return;
      }
      // Refused by the control state (removed, unknown policy, EK enrolled as another member).
      waiting = null;
      const detail = `re-enrolment of ${o.peerId} onto a new TPM refused by the control state: ${err instanceof Error ? err.message : String(err)}`;
      o.log(detail);
      await audit("denied", "FAILED_PRECONDITION", detail);
    }
  };
  // A refusal that a moment may cure (sealed, the TPM not answering) is checked again later, and this
  // peer answers no re-quote meanwhile: answering with its new AK while the control state holds the
  // old one would get it fenced. Only a record that fails for good is refused and audited.
  const check = async (): Promise<void> => {
    const refusal = await checkRecord(o, record, mac);
    if (stopped) return;
    if (refusal === null) {
      waiting = WAITING;
      void attempt();
      return;
    }
    if (refusal.retry) {
      waiting = `${WAITING}: ${refusal.reason}`;
      if (refusal.reason !== lastWait) o.log(`re-enrolment: checked again later: ${refusal.reason}`);
      lastWait = refusal.reason;
      later(check);
      return;
    }
    waiting = null;
    const detail = `re-enrolment of ${o.peerId} onto a new TPM refused: ${refusal.reason}`;
    o.log(detail);
    await audit("denied", "PERMISSION_DENIED", detail);
  };
  await check();
  return {
    pending: () => waiting,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/** null when the record may be committed; otherwise why not, and whether a later check may pass. */
async function checkRecord(
  o: PendingReenrolmentOptions,
  record: ReenrolmentRecord,
  mac: Uint8Array,
): Promise<{ reason: string; retry: boolean } | null> {
  const refused = (reason: string): { reason: string; retry: boolean } => ({ reason, retry: false });
  if (record.clusterId !== o.clusterId || record.peerId !== o.peerId) {
    return refused(`the record is for peer ${record.peerId} of cluster ${record.clusterId}`);
  }
  // Sealed: the record is checked once the peer is unsealed.
  if (o.barrier.sealed) return { reason: "this peer is sealed", retry: true };
  let held;
  try {
    held = o.barrier.releaseKey(record.epoch);
  } catch {
    return { reason: "this peer is sealed", retry: true };
  }
  if (held === undefined) return refused(`this peer does not hold master-key epoch ${record.epoch}`);
  try {
    if (!verifyReenrolmentMac(record, mac, held.key))
      return refused(
        "its MAC does not verify under the master key (not written by `lockbox recover`, or altered)",
      );
  } finally {
    zeroize(held.key);
  }
  if (o.tpm === undefined) return refused("this peer has no TPM");
  let ak: string;
  try {
    ak = await o.tpm.use((tpm) => currentAkPublic(tpm));
  } catch (err) {
    // A TPM that does not answer now (restarting, busy) may answer later.
    return {
      reason: `this peer's TPM did not answer: ${err instanceof Error ? err.message : String(err)}`,
      retry: true,
    };
  }
  if (ak !== record.akPublic) return refused("this peer's TPM is not the one the record proved (another AK)");
  return null;
}

/** Commits the record, unless the control state holds it already (a restart after the commit). */
async function commit(
  o: PendingReenrolmentOptions,
  record: ReenrolmentRecord,
): Promise<"committed" | "already"> {
  const current = (await o.control.readCurrent()).member(o.peerId);
  if (
    current !== undefined &&
    current.akPublic === record.akPublic &&
    current.ekPublicKey === record.ekPublicKey
  ) {
    return "already";
  }
  await o.control.proposeOrThrow({
    type: "member.reenroll",
    id: o.peerId,
    ekPublicKey: record.ekPublicKey,
    ekCertificate: record.ekCertificate,
    akPublic: record.akPublic,
    quoteClock: record.quoteClock,
    reason: `re-enrolled onto a new TPM (recover, quote met policy ${record.policy})`,
    atMs: o.nowMs(),
  });
  return "committed";
}
