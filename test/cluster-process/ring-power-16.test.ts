/**
 * Partition power 16 end to end (issue 10: the ring record was bounded at 12 KiB, so power above 10
 * with N = 3 could not be stored): three real peer processes on 127.0.0.1 with `replication.enabled`
 * and `partitionPower: 16`, joined by the NOT ATTESTED test path (AddPeerUnattested,
 * allowUnattestedMembersForTests: attestation is not what this test checks). The leader commits the
 * ring (65,536 partitions, N = 3) through the control state in ring.part commands; every peer uses
 * it: `lockbox ring show` reports it, and a key created through one peer reads with its material
 * through the other two.
 */
import test from "ava";
import { runCliJson } from "../helpers/cli-process.js";
import { spawnPeer, type PeerProcess } from "../helpers/peer-process.js";
import { UNATTESTED_FLAG, addUnattestedPeer } from "../helpers/unattested-member.js";
import { waitFor } from "../helpers/wait-for.js";

const REPLICATION = {
  enabled: true,
  antiEntropyIntervalMs: 2_000,
  handoffIntervalMs: 2_000,
  writeDeadlineMs: 5_000,
  readDeadlineMs: 5_000,
};

type Shown = { version: string; replicas: number; partition_power: number; peers: { partitions: number }[] };

test("three peers with partition power 16 and N = 3 commit the ring through the control state and serve keys on it", async (t) => {
  t.timeout(300_000);
  const started: PeerProcess[] = [];
  t.teardown(async () => {
    for (const p of started.reverse()) await p.teardown();
  });
  const a = await spawnPeer({
    peerId: "peer-a",
    configPatch: { ...UNATTESTED_FLAG, partitionPower: 16, replication: REPLICATION },
  });
  started.push(a);
  started.push(await addUnattestedPeer(a, "peer-b", "zone-2"));
  started.push(await addUnattestedPeer(a, "peer-c", "zone-3"));
  const [, b, c] = started as [PeerProcess, PeerProcess, PeerProcess];
  const shown = await waitFor(
    async () => {
      const s = await runCliJson<Shown>(["ring", "show", ...c.cliFlags(), "--json"]);
      return s.replicas === 3 ? s : undefined;
    },
    120_000,
    "a ring of power 16 with N = 3",
    500,
  );
  t.is(shown.partition_power, 16);
  t.deepEqual(
    shown.peers.map((p) => p.partitions),
    [65_536, 65_536, 65_536],
  );
  const viaA = a.client();
  const key = await waitFor(
    () => viaA.createKey({ project: "proj", scope: "vol-16", name: "big-ring" }),
    60_000,
    "a create through peer-a",
    500,
  );
  const fromB = await b.client().getKey(key.id, { bypassCache: true });
  const fromC = await c.client().getKey(key.id, { bypassCache: true });
  t.deepEqual(new Uint8Array(fromB.material), new Uint8Array(fromC.material));
  t.is(fromB.material.length, 32);
});
