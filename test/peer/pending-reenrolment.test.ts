/**
 * The peer's side of re-enrolment onto a new TPM (src/peer/pending-reenrolment.ts). A record that fails
 * for a reason a moment may cure (the peer still sealed, its TPM not answering) keeps the peer from
 * answering re-quotes and is checked again, then committed; it is not dropped after one look (the peer
 * would answer re-quotes with its new AK while the control state holds the old one, and be fenced).
 * The control plane and the TPM are stubs (named so): this is the retry logic alone; the real-process
 * recovery is test/e2e/cluster-recovery.test.ts.
 */
import test, { type ExecutionContext } from "ava";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  readReenrolment,
  writeReenrolment,
  type ReenrolmentRecord,
} from "../../src/attestation/reenrolment.js";
import type { ControlCommand } from "../../src/controlplane/control-command.js";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { Barrier } from "../../src/crypto/barrier.js";
import { Keyring } from "../../src/crypto/keyring.js";
import { LockboxError } from "../../src/errors.js";
import { startPendingReenrolment } from "../../src/peer/pending-reenrolment.js";
import type { PeerTpm } from "../../src/sealing/peer-tpm.js";
import { waitFor } from "../helpers/wait-for.js";

const record: ReenrolmentRecord = {
  clusterId: "cluster-x",
  peerId: "peer-2",
  epoch: 1,
  ekPublicKey: Buffer.from("new-ek").toString("base64"),
  ekCertificate: "",
  akPublic: Buffer.from("new-ak").toString("base64"),
  policy: "dev-peer-2",
  quoteClock: { clock: "5", resetCount: 0, restartCount: 0 },
  createdAtMs: 1_700_000_000_000,
};

const until = (what: () => boolean): Promise<boolean> =>
  waitFor(async () => what(), 10_000, "the condition", 10);

/** A record written in a temporary directory under `cmk`, removed when the test ends. */
async function recordDir(t: ExecutionContext, cmk: Uint8Array): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-pending-reenrolment-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeReenrolment(dir, record, cmk);
  return dir;
}

/** startPendingReenrolment over a stub control plane (it records what is proposed) and `tpm`. */
async function startStubbed(t: ExecutionContext, dir: string, barrier: Barrier, tpm: PeerTpm) {
  const proposed: ControlCommand[] = [];
  const control = {
    readCurrent: () => Promise.resolve({ member: () => undefined }),
    proposeOrThrow: (c: ControlCommand) => {
      proposed.push(c);
      return Promise.resolve({ index: 1, result: { ok: true } });
    },
  } as unknown as ControlPlane;
  const audited: string[] = [];
  const p = await startPendingReenrolment({
    dir,
    peerId: "peer-2",
    clusterId: "cluster-x",
    control,
    barrier,
    tpm,
    audit: {
      append: (e) => {
        audited.push(`${e.outcome}: ${e.detail}`);
        return Promise.resolve();
      },
    },
    nowMs: () => 1,
    log: () => {},
    retryMs: 20,
  });
  t.teardown(() => p.stop());
  return { p, proposed, audited };
}

test("stubbed control plane and TPM: a sealed peer, then an unanswering TPM, keep the re-enrolment pending and checked again; it commits once both are cured", async (t) => {
  const cmk = randomBytes(32);
  const dir = await recordDir(t, cmk);
  const barrier = new Barrier(); // sealed
  let tpmAnswers = false;
  let tpmCalls = 0;
  const tpm = {
    use: () => {
      tpmCalls++;
      return tpmAnswers
        ? Promise.resolve(record.akPublic)
        : Promise.reject(new LockboxError("UNAVAILABLE", "connection refused"));
    },
  } as unknown as PeerTpm;
  const { p, proposed, audited } = await startStubbed(t, dir, barrier, tpm);
  t.regex(p.pending() ?? "", /sealed/, "sealed: the re-enrolment waits, the peer answers no re-quote");
  await new Promise((r) => setTimeout(r, 100));
  t.regex(p.pending() ?? "", /sealed/, "still waiting while sealed");
  t.is(tpmCalls, 0);
  barrier.unseal(Keyring.empty().withEpoch(1, cmk));
  await until(() => tpmCalls >= 2);
  t.regex(p.pending() ?? "", /TPM did not answer/, "a TPM that does not answer: still pending, asked again");
  t.deepEqual(proposed, []);
  t.deepEqual(audited, [], "a passing failure is not a refusal");
  tpmAnswers = true;
  await until(() => p.pending() === null);
  t.is(proposed.length, 1);
  t.like(proposed[0], { type: "member.reenroll", id: "peer-2", akPublic: record.akPublic });
  t.is(audited.length, 1);
  t.regex(audited[0]!, /^ok: peer peer-2 re-enrolled/);
  // The record is removed after the commit (pending() is null once the commit applied).
  const deadline = Date.now() + 10_000;
  while ((await readReenrolment(dir)) !== undefined && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
  }
  t.is(await readReenrolment(dir), undefined, "the committed record is removed");
});

test("stubbed control plane and TPM: a record that fails for good (another AK) is refused and audited at once, and the peer does not wait", async (t) => {
  const cmk = randomBytes(32);
  const dir = await recordDir(t, cmk);
  const barrier = new Barrier();
  barrier.unseal(Keyring.empty().withEpoch(1, cmk));
  const tpm = {
    use: () => Promise.resolve(Buffer.from("other-ak").toString("base64")),
  } as unknown as PeerTpm;
  const { p, proposed, audited } = await startStubbed(t, dir, barrier, tpm);
  t.is(p.pending(), null);
  t.is(audited.length, 1);
  t.regex(audited[0]!, /^denied: .*another AK/);
  await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(proposed, []);
  t.truthy(await readReenrolment(dir), "the refused record is left for the operator");
});
