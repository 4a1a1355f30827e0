/**
 * The founding peer is attested like a joined one (issue 9 item 5, continuous attestation): `lockbox
 * init --tpm` records its AK (activated against its own EK) and a PCR policy of its state, the leader
 * records it with them, and the members re-quote it. With real processes (`lockbox dev-cluster start`:
 * 3 peers, each with its own swtpm; peer-1 made by `init --tpm`), a PCR extended on peer-1's swtpm
 * fences peer-1 within two attestation intervals, and once the operator approves its new state it
 * attests again and returns.
 */
import test from "ava";
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { TpmtHa } from "../../tpm/spec/basic.js";
import { TpmlPcrSelection } from "../../tpm/spec/pcr.js";
import { quotePolicyForValues } from "../../tpm/verify/quote-policy.js";
import { FOUNDER_ATTESTATION_FILE } from "../../src/attestation/founder-attestation.js";
import { parseTpmAddress } from "../../src/sealing/tpm-address.js";
import { PeerTpm } from "../../src/sealing/peer-tpm.js";
import { runCli } from "../helpers/cli-process.js";
import { startDevCluster } from "../helpers/dev-cluster.js";
import { pollFor } from "../helpers/wait-for.js";

const INTERVAL_MS = 2_000;
const START_TIMEOUT_MS = 170_000;
const POLICY_PCRS = [0, 1, 2, 3, 7];
const FOUNDER = "peer-1";

interface PeerRow {
  peer_id: string;
  state: string;
  reason: string;
  policy: string;
  state_changed_at?: { seconds: string | number; nanos: number } | null;
}

test("the founder is recorded with its AK and PCR policy and re-quoted: a PCR extended on its swtpm fences it within two intervals; approved, it returns", async (t) => {
  t.timeout(START_TIMEOUT_MS + 90_000);
  const { root, dir, started, admin, adminArgs } = await startDevCluster({
    prefix: "founder-fence",
    timeoutMs: START_TIMEOUT_MS,
    env: { LOCKBOX_ATTESTATION_INTERVAL_MS: String(INTERVAL_MS) },
    onCleanup: (undo) => t.teardown(undo),
  });
  const founderRow = async (): Promise<PeerRow | undefined> =>
    (await admin.adminCall<{ peers: PeerRow[] }>("ListPeers", {}, { deadlineMs: 3_000 })).peers.find(
      (p) => p.peer_id === FOUNDER,
    );

  const attestation = JSON.parse(await fs.readFile(join(dir, FOUNDER, FOUNDER_ATTESTATION_FILE), "utf8")) as {
    policyName: string;
    akPublic: string;
  };
  t.true(attestation.akPublic.length > 0, "init recorded the founder's AK");
  const recorded = await pollFor(async () => {
    const row = await founderRow();
    return row?.state === "active" && row.policy === attestation.policyName ? row : undefined;
  }, 30_000);
  t.truthy(recorded, `the founder is not recorded active with policy ${attestation.policyName}`);
  t.regex(recorded?.reason ?? "", /attested/);
  // Re-quoted: it stays active over several intervals (its quotes pass), and is not fenced.
  await sleep(3 * INTERVAL_MS);
  t.is((await founderRow())?.state, "active");

  const layout = JSON.parse(await fs.readFile(join(dir, "layout.json"), "utf8")) as {
    peers: { id: string; swtpmPort: number }[];
  };
  const port = layout.peers.find((p) => p.id === FOUNDER)!.swtpmPort;
  const tpm = new PeerTpm(parseTpmAddress(`swtpm:127.0.0.1:${port}`)!);
  const extendedAt = Date.now();
  await tpm.use((x) => x.pcrExtend(7, [new TpmtHa(TPM_ALG_ID.SHA256, Buffer.alloc(32, 0x5a))]));
  const fenced = await pollFor(async () => {
    const row = await founderRow();
    return row?.state === "fenced" ? row : undefined;
  }, 6 * INTERVAL_MS);
  t.truthy(fenced, "the founder was not fenced");
  t.regex(fenced?.reason ?? "", /pcr-policy/);
  const changedAt = Number(fenced?.state_changed_at?.seconds ?? 0) * 1000;
  t.true(
    changedAt - extendedAt <= 2 * INTERVAL_MS + 1_000,
    `fenced ${changedAt - extendedAt} ms after the extend`,
  );

  // The operator approves the founder's new state: its next re-quote attests it again.
  const values = await tpm.use(async (x) =>
    (await x.pcrRead(TpmlPcrSelection.of(TPM_ALG_ID.SHA256, POLICY_PCRS))).values.map((v) => ({
      hashAlg: v.hash,
      pcr: v.pcr,
      value: v.digest,
    })),
  );
  const policyFile = join(root, "approved.json");
  await fs.writeFile(
    policyFile,
    JSON.stringify(
      quotePolicyForValues(values, {
        hashAlg: "sha256",
        signatureScheme: "ecdsa",
        firmwareVersionMin: "00000000.00000000",
      }),
    ),
  );
  const others = started.peers.filter((p) => p.peer_id !== FOUNDER).map((p) => p.address);
  // When the founder led, its fence also ends its leadership (the others refuse its raft calls): the
  // approval waits for the next leader, so UNAVAILABLE (exit 5, retryable) is retried, bounded.
  const approve = (): ReturnType<typeof runCli> =>
    runCli([
      "policy",
      "add",
      attestation.policyName,
      "--file",
      policyFile,
      ...others.flatMap((a) => ["--endpoint", a]),
      ...adminArgs,
      "--json",
    ]);
  let added = await approve();
  for (let i = 0; i < 20 && added.code === 5; i++) {
    await sleep(500);
    added = await approve();
  }
  t.is(added.code, 0, added.stderr);
  const back = await pollFor(async () => {
    const row = await founderRow();
    return row?.state === "active" ? row : undefined;
  }, 6 * INTERVAL_MS);
  t.truthy(back, "the founder did not return after the policy approved its state");
});
