/**
 * Issue 12's rebalance metrics with real peer processes: `lockbox_rebalance_{moved,total}_partition_replicas`
 * once read 0 through every real rebalance (a push hook that no part called). Three replicated peers
 * hold keys, a 4th joins; every peer's /metrics is scraped while the partitions move and after, and
 * the numbers are held against `lockbox ring status` (the real CLI) of the same peer.
 *
 * Peers join by the NOT ATTESTED test path (allowUnattestedMembersForTests).
 */
import test from "ava";

import { runCli, runCliJson } from "../helpers/cli-process.js";
import {
  clusterTeardown,
  ProcessCluster,
  REPLICATION_FAST,
  waitFor,
  type ClusterPeer,
} from "../helpers/cluster-processes.js";
import { sample, scrapeMetrics } from "../helpers/peer-metrics-scrape.js";

const KEYS = 60;
const SCOPES = 12;
const STEP_TIMEOUT_MS = 60_000;

interface RingStatus {
  version: string | number;
  local_version: string | number;
  partition_replicas_moved?: number;
  partitions_receiving?: number;
  partitions_received?: number;
  records_received?: string | number;
}

interface Progress {
  moved: number;
  total: number;
}

test("rebalance metrics with real peers: a 4th peer joins a replicated 3-peer cluster holding keys; its moved partition-replicas rise above 0 and never pass the total, and every peer's numbers are those `lockbox ring status` prints", async (t) => {
  t.timeout(240_000);
  const cluster = await ProcessCluster.start({
    peers: 3,
    configure: (c) => {
      c.replication = { ...REPLICATION_FAST, replicas: 3, minPartHours: 0 };
      c.partitionPower = 6;
      // Each peer's /metrics on a free loopback port of its own (its ready line says which).
      c.metrics = { listen: "127.0.0.1:0" };
    },
  });
  t.teardown(clusterTeardown(t, cluster));
  await cluster.waitKeysServed(60_000);
  const writer = cluster.client(undefined, { cache: false, deadlineMs: 5_000 });
  for (let i = 0; i < KEYS; i++)
    await writer.createKey({ project: "rebalance-metrics", scope: `vol-${i % SCOPES}`, name: `k${i}` });

  const status = (p: ClusterPeer): Promise<RingStatus> =>
    runCliJson<RingStatus>(["ring", "status", ...p.process.cliFlags(), "--json"]);
  const before = Number((await status(cluster.peer("peer-1"))).version);

  const joined = await cluster.addPeer();
  await cluster.waitMembers(4, STEP_TIMEOUT_MS);

  // Scrape every peer while the change applies and its partitions stream in, until every peer routes
  // by the new ring and has streamed in all it receives. Every reading keeps moved <= total.
  const readings: string[] = [];
  const broken: string[] = [];
  let last = new Map<string, Progress>();
  await waitFor(
    async () => {
      const now = new Map<string, Progress>();
      for (const p of cluster.running) now.set(p.id, await scrapeProgress(p));
      last = now;
      const line = [...now].map(([id, v]) => `${id} ${v.moved}/${v.total}`).join(", ");
      if (readings.at(-1) !== line) readings.push(line);
      for (const [id, v] of now) if (v.moved > v.total) broken.push(`${id}: ${line}`);
      if ((now.get(joined.id)?.total ?? 0) === 0) return false;
      if ([...now.values()].some((v) => v.moved !== v.total)) return false;
      const views = await Promise.all(cluster.running.map(status));
      return views.every(
        (v) => Number(v.local_version) > before && Number(v.local_version) === Number(v.version),
      );
    },
    STEP_TIMEOUT_MS,
    "the ring change applied on every peer and every partition-replica streamed in",
  );
  t.log(`moved/total per peer along the way:\n  ${readings.join("\n  ")}`);
  t.deepEqual(broken, [], "no scrape showed more partition-replicas moved than the total");

  const mine = last.get(joined.id)!;
  t.true(mine.moved > 0, "the joining peer's scrape shows partition-replicas moved in");
  t.is(mine.moved, mine.total);

  // `lockbox ring status` of each peer shows the same progress; the totals sum to the whole change.
  const after = new Map<string, Progress>();
  const movedSeen = new Set<number>();
  for (const p of cluster.running) {
    const s = await status(p);
    const scraped = await scrapeProgress(p);
    after.set(p.id, scraped);
    t.is(s.partitions_received ?? 0, scraped.moved, `${p.id}: received = moved`);
    t.is(s.partitions_receiving ?? 0, scraped.total, `${p.id}: receiving = total`);
    movedSeen.add(s.partition_replicas_moved ?? 0);
  }
  t.is(movedSeen.size, 1, "every peer saw the same ring change");
  const moved = [...movedSeen][0]!;
  t.true(moved > 0);
  t.is(
    [...after.values()].reduce((n, v) => n + v.total, 0),
    moved,
    "the peers' totals sum to the partition-replicas the change moved",
  );
  const text = await runCli(["ring", "status", ...joined.process.cliFlags()]);
  t.is(text.code, 0, text.stderr);
  t.regex(
    text.text,
    new RegExp(`partitions received / receiving\\s+${mine.moved} / ${mine.total} \\(remaining 0\\)`),
  );
  t.regex(text.text, new RegExp(`partition-replicas moved by the last change\\s+${moved}\\b`));
});

/** The two rebalance gauges from one scrape of the peer's /metrics. */
async function scrapeProgress(p: ClusterPeer): Promise<Progress> {
  const body = await scrapeMetrics(p);
  return {
    moved: sample(body, "lockbox_rebalance_moved_partition_replicas"),
    total: sample(body, "lockbox_rebalance_total_partition_replicas"),
  };
}
