/**
 * Keys replicated over the ring with real peer processes (issue 10 items 4, 5, 7): three peers on
 * 127.0.0.1 with `replication.enabled`, joined by the NOT ATTESTED test path (AddPeerUnattested,
 * allowUnattestedMembersForTests: attestation is not what these tests check). A key created through
 * one peer is read with its exact material through the others; with one peer SIGKILLed, creates and
 * reads still succeed through the other two (W = R = 2 of N = 3); the killed peer, restarted, catches
 * up, so every acknowledged key is in all three peers' stores (checked on disk after they stop); and
 * a listing through any peer includes every acknowledged key.
 */
import test from "ava";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { decodeReplicatedKey } from "../../cluster/replication/index.js";
import type { LockboxClient } from "../../src/client/index.js";
import { openPeerStore } from "../../src/store/peer-store.js";
import { runCli, runCliJson } from "../helpers/cli-process.js";
import { startPeerInDir, type PeerProcess } from "../helpers/peer-process.js";
import { threeUnattestedPeers } from "../helpers/unattested-member.js";
import { REPLICATION_FAST, waitFor } from "../helpers/cluster-processes.js";

const importInput = (scope: string, i: number, material: Uint8Array) => ({
  project: "proj",
  scope,
  name: `k${i}`,
  material,
});

async function logs(t: { log(...v: unknown[]): void }, peers: PeerProcess[]): Promise<void> {
  for (const p of peers) t.log(p.dir, (await p.log().catch(() => "")).split("\n").slice(-20).join("\n"));
}

test("a key imported through one peer reads with its exact material through the other two", async (t) => {
  t.timeout(240_000);
  const started: PeerProcess[] = [];
  t.teardown(async () => {
    for (const p of started.reverse()) await p.teardown();
  });
  const [a, b, c] = await threeUnattestedPeers(started, { replication: REPLICATION_FAST });
  const viaA = a.client();
  const material = new Uint8Array(randomBytes(32));
  // The first ring (N = 3) is committed a moment after the third member: retry until it is.
  const meta = await waitFor(
    () => viaA.importKey(importInput("vol-1", 0, material)),
    60_000,
    "an import through peer-a",
  ).catch(async (e) => {
    await logs(t, started);
    throw e;
  });
  for (const [name, peer] of [
    ["peer-b", b],
    ["peer-c", c],
  ] as const) {
    const got = await peer.client().getKey(meta.id, { bypassCache: true });
    t.deepEqual(new Uint8Array(got.material), material, name);
    t.is(got.key.id, meta.id);
    t.is(got.key.name, "k0");
  }
  // A created (not imported) key: same material through every peer.
  const created = await viaA.createKey({ project: "proj", scope: "vol-1", name: "gen" });
  const fromB = await b.client().getKey(created.id, { bypassCache: true });
  const fromC = await c.client().getKey(created.id, { bypassCache: true });
  t.deepEqual(new Uint8Array(fromB.material), new Uint8Array(fromC.material));
  t.is(fromB.material.length, 32);

  // `lockbox ring show`: the ring the leader built from the three members, N = 3, balanced.
  type Shown = {
    version: string;
    replicas: number;
    partition_power: number;
    balance: number;
    peers: { peer_id: string; partitions: number }[];
  };
  const shown = await runCliJson<Shown>(["ring", "show", ...b.cliFlags(), "--json"]);
  t.true(Number(shown.version) > 0);
  t.is(shown.replicas, 3);
  t.is(shown.partition_power, 10);
  t.deepEqual(shown.peers.map((p) => p.peer_id).sort(), ["peer-a", "peer-b", "peer-c"]);
  // Three equal peers, N = 3: every peer holds every partition.
  for (const p of shown.peers) t.is(p.partitions, 1024, p.peer_id);
  t.true(shown.balance <= 1, `balance ${shown.balance}`);
  const text = await runCli(["ring", "show", ...c.cliFlags()]);
  t.is(text.code, 0, text.stderr);
  t.regex(text.text, /ring version \d+: 1024 partitions \(power 10\), 3 replicas/);
  t.regex(text.text, /balance .*dispersion/);
  // `lockbox ring status`: the peer routes by the committed version; the growth from N = 1 streamed
  // partitions to the peers that joined (every partition, to each of them).
  type Status = {
    version: string;
    local_version: string;
    partitions_receiving: number;
    partitions_received: number;
  };
  const status = await waitFor(
    async () => {
      const s = await runCliJson<Status>(["ring", "status", ...c.cliFlags(), "--json"]);
      return s.local_version === s.version && s.partitions_received === s.partitions_receiving
        ? s
        : undefined;
    },
    60_000,
    "peer-c routes by the committed ring and has streamed its partitions in",
  );
  t.true(status.partitions_receiving > 0);
  const statusText = await runCli(["ring", "status", ...c.cliFlags()]);
  t.is(statusText.code, 0, statusText.stderr);
  t.regex(statusText.text, /partitions received \/ receiving\s+\d+ \/ \d+ \(remaining 0\)/);
  const help = await runCli(["ring", "--help"]);
  t.is(help.code, 0);
  t.regex(help.text, /show .*\n.*status/s);
});

test("with one peer SIGKILLed creates and reads succeed through the others; restarted, it catches up and listings through every peer hold every acknowledged key", async (t) => {
  t.timeout(300_000);
  const started: PeerProcess[] = [];
  t.teardown(async () => {
    for (const p of started.reverse()) await p.teardown();
  });
  const [a, b, c] = await threeUnattestedPeers(started, { replication: REPLICATION_FAST });
  const clients = new Map<PeerProcess, LockboxClient>([
    [a, a.client()],
    [b, b.client()],
    [c, c.client()],
  ]);
  const acked = new Map<string, Uint8Array>();
  const importThrough = async (peer: PeerProcess, i: number): Promise<void> => {
    const material = new Uint8Array(randomBytes(32));
    const meta = await clients.get(peer)!.importKey(importInput(`vol-${i % 4}`, i, material));
    acked.set(meta.id, material);
  };
  await waitFor(() => importThrough(a, 0).then(() => true), 60_000, "the first import");
  for (let i = 1; i < 8; i++) await importThrough(i % 2 === 0 ? a : b, i);

  await c.kill("SIGKILL");
  // W = R = 2 of 3: the two live peers still acknowledge creates and answer reads.
  for (let i = 8; i < 24; i++) await importThrough(i % 2 === 0 ? a : b, i);
  for (const [id, material] of acked) {
    const got = await clients.get(b)!.getKey(id, { bypassCache: true });
    t.deepEqual(new Uint8Array(got.material), material, id);
  }

  // Restarted on its old port (its address in the control state stays right).
  const c2 = await startPeerInDir(c.dir, { serveArgs: ["--listen", c.address] });
  started.push(c2);
  const viaC = c2.client();
  started.push(c); // its directory is removed by teardown too (harmless twice)
  await waitFor(
    async () => {
      for (const [id, material] of acked) {
        const got = await viaC.getKey(id, { bypassCache: true });
        if (Buffer.compare(got.material, Buffer.from(material)) !== 0) throw new Error(`material of ${id}`);
      }
      return true;
    },
    60_000,
    "reads through the restarted peer",
  );

  // Listing, by project and by one scope, through every peer: every acknowledged key is there.
  for (const client of [clients.get(a)!, clients.get(b)!, viaC]) {
    const all = await client.listAllKeys({ project: "proj", pageSize: 5 });
    t.deepEqual(all.map((k) => k.id).sort(), [...acked.keys()].sort());
    const scoped = await client.listAllKeys({ project: "proj", scope: "vol-1", pageSize: 2 });
    const expected = [...acked.keys()].filter((_, i) => i % 4 === 1);
    t.deepEqual(scoped.map((k) => k.id).sort(), expected.sort());
  }

  // Anti-entropy brings the restarted peer's replica up to date: after every peer stops, each
  // peer's own store holds every acknowledged key (N = 3 on 3 peers: every peer is a primary of all).
  await new Promise((r) => setTimeout(r, 3_000));
  for (const p of [a, b, c2]) await p.kill("SIGTERM");
  for (const p of [a, b, c2]) {
    const store = await openPeerStore(join(p.dir, "data"));
    try {
      const held = new Set<string>();
      for await (const [, value] of store.sublevel("records").iterator()) {
        held.add(decodeReplicatedKey(value).fields.id);
      }
      for (const id of acked.keys()) t.true(held.has(id), `${p.dir} lacks ${id}`);
    } finally {
      await store.close();
    }
  }
});
