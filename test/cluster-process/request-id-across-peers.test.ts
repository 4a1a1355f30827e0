/**
 * A create retried with its client request id through ANOTHER peer (issue 10 must-have 4), with real
 * peer processes: three peers on 127.0.0.1 with `replication.enabled` (N = 3, W = R = 2), joined by
 * the NOT ATTESTED test path (AddPeerUnattested, allowUnattestedMembersForTests: attestation is not
 * what this test checks). CreateKey with request id R through peer 1, then the same through peers 2
 * and 3, answers one key id, and GetKey through every peer returns one material; the same R with a
 * different request is INVALID_ARGUMENT through any peer; concurrent attempts of one request through
 * all three peers answer one key. Every replica ends with one version of the key (checked on disk).
 */
import test from "ava";
import { join } from "node:path";
import { decodeReplicatedKey } from "../../cluster/replication/index.js";
import { LockboxClientError } from "../../src/client/client-error.js";
import { runCliJson } from "../helpers/cli-process.js";
import { openPeerStore } from "../../src/store/peer-store.js";
import type { PeerProcess } from "../helpers/peer-process.js";
import { threeUnattestedPeers } from "../helpers/unattested-member.js";
import { REPLICATION_FAST, waitFor } from "../helpers/cluster-processes.js";

const create = (name: string, bitLength = 256) => ({ project: "proj", scope: "vol-r", name, bitLength });

test("CreateKey with one client request id through each of three peers makes one key with one material", async (t) => {
  t.timeout(300_000);
  const started: PeerProcess[] = [];
  t.teardown(async () => {
    for (const p of started.reverse()) await p.teardown();
  });
  const [a, b, c] = await threeUnattestedPeers(started, { replication: REPLICATION_FAST });
  // Every peer routes by the final ring (N = 3): rival versions are settled within one ring version
  // (docs/architecture.md), so the attempts below must not straddle the ring's growth from N = 1.
  type RingView = { version: string; local_version: string; replicas: number };
  await waitFor(
    async () => {
      const views = await Promise.all(
        [a, b, c].map((p) => runCliJson<RingView>(["ring", "show", ...p.cliFlags(), "--json"])),
      );
      const settled = views.every(
        (v) => v.replicas === 3 && v.local_version === v.version && v.version === views[0]!.version,
      );
      return settled ? true : undefined;
    },
    90_000,
    "every peer on the ring with N = 3",
  );
  const [viaA, viaB, viaC] = [a.client(), b.client(), c.client()];
  // The ring with N = 3 is committed a moment after the third member: a key written through A that
  // reads through C says it is in use.
  await waitFor(
    async () => {
      const k = await viaA.createKey(create("probe"));
      return (await viaC.getKey(k.id, { bypassCache: true })).key.id === k.id ? true : undefined;
    },
    60_000,
    "the ring over three peers",
  );

  const first = await viaA.createKey(create("root"), { clientRequestId: "req-across-1" });
  const second = await viaB.createKey(create("root"), { clientRequestId: "req-across-1" });
  const third = await viaC.createKey(create("root"), { clientRequestId: "req-across-1" });
  t.is(second.id, first.id, "through peer 2");
  t.is(third.id, first.id, "through peer 3");
  const materials = await Promise.all(
    [viaA, viaB, viaC].map((cl) => cl.getKey(first.id, { bypassCache: true })),
  );
  for (const m of materials) t.deepEqual(new Uint8Array(m.material), new Uint8Array(materials[0]!.material));
  t.is(materials[0]!.material.length, 32);

  // The same request id with a different request: INVALID_ARGUMENT through every peer, as on one peer.
  for (const [name, cl] of [
    ["peer 1", viaA],
    ["peer 2", viaB],
    ["peer 3", viaC],
  ] as const) {
    const e = await t.throwsAsync(cl.createKey(create("root", 128), { clientRequestId: "req-across-1" }));
    t.true(e instanceof LockboxClientError && e.code === "INVALID_ARGUMENT", `${name}: ${String(e)}`);
  }

  // Concurrent attempts of one request through all three peers: one key.
  const raced = await Promise.allSettled(
    [viaA, viaB, viaC].map((cl) => cl.createKey(create("raced"), { clientRequestId: "req-across-race" })),
  );
  const ok = raced.flatMap((r) => (r.status === "fulfilled" ? [r.value.id] : []));
  t.true(
    ok.length >= 1,
    JSON.stringify(raced.map((r) => (r.status === "rejected" ? String(r.reason) : "ok"))),
  );
  t.deepEqual([...new Set(ok)], [ok[0]], "every answered attempt names one key");
  const raceMaterials = await Promise.all(
    [viaA, viaB, viaC].map((cl) => cl.getKey(ok[0]!, { bypassCache: true })),
  );
  for (const m of raceMaterials)
    t.deepEqual(new Uint8Array(m.material), new Uint8Array(raceMaterials[0]!.material));

  // Let the last copies land, then check every replica's disk: one version of each key, the same bytes.
  await new Promise((r) => setTimeout(r, 2_000));
  for (const p of [a, b, c]) await p.kill("SIGTERM");
  const held: Map<string, string>[] = [];
  for (const p of [a, b, c]) {
    const store = await openPeerStore(join(p.dir, "data"));
    const versions = new Map<string, string>();
    try {
      for await (const [, value] of store.sublevel("records").iterator()) {
        const k = decodeReplicatedKey(value);
        if (k.fields.id === first.id || k.fields.id === ok[0]) {
          versions.set(k.fields.id, Buffer.from(value).toString("hex"));
          t.is(k.settled !== undefined, true, "a request's key carries its request");
        }
      }
    } finally {
      await store.close();
    }
    held.push(versions);
  }
  for (const versions of held) {
    t.is(versions.size, 2, "each replica holds both keys");
    t.deepEqual(versions, held[0], "and the same version of each");
  }
});
