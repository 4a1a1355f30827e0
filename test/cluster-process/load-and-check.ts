/**
 * The client side of the replication acceptance tests: a bounded closed-loop load of imports (the
 * material is known, so every read can be checked byte for byte), reads and deletes, recording what
 * was acknowledged; and the checks run afterwards, through every peer and on every peer's disk.
 */
import { createHash, randomBytes } from "node:crypto";
import { join } from "node:path";

import { isLockboxClientError, type LockboxClient } from "../../src/client/index.js";
import { openPeerStore } from "../../src/store/peer-store.js";
import { partitionHexWidth } from "../../src/store/record-key.js";
import type { ProcessCluster } from "../helpers/cluster-processes.js";

/** What the load saw acknowledged, and what it cannot know (a call that failed may have happened). */
export interface Ledger {
  /** Acknowledged imports not deleted: id -> material. */
  live: Map<string, Uint8Array>;
  /** Acknowledged deletes. */
  deleted: Set<string>;
  /** Imports or deletes whose call failed: either outcome is allowed, but material must still match. */
  uncertain: Map<string, Uint8Array | undefined>;
  counts: {
    imports: number;
    reads: number;
    deletes: number;
    failed: number;
    /** Reads of a live key answered NOT_FOUND while faults ran (a sloppy quorum may miss a handoff copy). */
    readsMissed: number;
  };
  /** Hard violations seen during the load: wrong material, a deleted key read back. */
  violations: string[];
}

export function newLedger(): Ledger {
  return {
    live: new Map(),
    deleted: new Set(),
    uncertain: new Map(),
    counts: { imports: 0, reads: 0, deletes: 0, failed: 0, readsMissed: 0 },
    violations: [],
  };
}

/** mulberry32: the fault schedule and the load's choices follow from one printed seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export interface LoadOptions {
  clients: LockboxClient[];
  /** The load stops when this resolves, or at `untilMs` (epoch ms), whichever is first. */
  untilMs: number;
  stop?: Promise<void>;
  random: () => number;
  /** Spreads the keys over this many scopes (partitions). */
  scopes: number;
  /** Share of reads and deletes; the rest are imports. */
  readShare?: number;
  deleteShare?: number;
}

/** One closed loop per client until the deadline; every acknowledged outcome goes into `ledger`. */
export async function runLoad(ledger: Ledger, options: LoadOptions): Promise<void> {
  const { random, clients } = options;
  const readShare = options.readShare ?? 0.3;
  const deleteShare = options.deleteShare ?? 0.1;
  let stopped = false;
  void options.stop?.then(() => (stopped = true));
  const ids = (): string[] => [...ledger.live.keys()];
  let serial = 0;
  const worker = async (client: LockboxClient): Promise<void> => {
    while (!stopped && Date.now() < options.untilMs) {
      const r = random();
      const live = ids();
      if (r < readShare && live.length > 0) {
        // One read in five asks for a key whose delete was acknowledged: it must stay gone.
        const deleted = random() < 0.2 ? [...ledger.deleted] : [];
        const pool = deleted.length > 0 ? deleted : live;
        const id = pool[Math.floor(random() * pool.length)]!;
        await readOnce(ledger, client, id);
      } else if (r < readShare + deleteShare && live.length > 0) {
        const id = live[Math.floor(random() * live.length)]!;
        const material = ledger.live.get(id);
        // Another worker may be deleting it too: only the first takes it out of `live`.
        if (material === undefined) continue;
        ledger.live.delete(id);
        try {
          await client.deleteKey(id);
          ledger.counts.deletes++;
          ledger.deleted.add(id);
        } catch {
          ledger.counts.failed++;
          ledger.uncertain.set(id, material);
        }
      } else {
        const material = new Uint8Array(randomBytes(32));
        const i = serial++;
        try {
          const meta = await client.importKey({
            project: "faults",
            scope: `vol-${i % options.scopes}`,
            name: `k${i}`,
            material,
          });
          ledger.counts.imports++;
          ledger.live.set(meta.id, material);
        } catch {
          ledger.counts.failed++;
        }
      }
    }
  };
  await Promise.all(clients.map(worker));
}

async function readOnce(ledger: Ledger, client: LockboxClient, id: string): Promise<void> {
  const material = ledger.live.get(id);
  // Only a delete acknowledged before the read began must hide the key from it.
  const deletedBefore = ledger.deleted.has(id);
  try {
    const got = await client.getKey(id, { bypassCache: true });
    ledger.counts.reads++;
    const expected = material ?? ledger.uncertain.get(id);
    if (expected !== undefined && !Buffer.from(got.material).equals(Buffer.from(expected)))
      ledger.violations.push(`read of ${id} returned other material`);
    if (deletedBefore) ledger.violations.push(`read of ${id} found it after its delete was acknowledged`);
  } catch (e) {
    const gone = isLockboxClientError(e, "NOT_FOUND") || isLockboxClientError(e, "FAILED_PRECONDITION");
    if (deletedBefore && gone) {
      ledger.counts.reads++;
      return;
    }
    // Another worker may have deleted it meanwhile (then it left `live` before the delete was sent).
    const stillLive = ledger.live.has(id);
    if (isLockboxClientError(e, "NOT_FOUND") && stillLive) ledger.counts.readsMissed++;
    else if (isLockboxClientError(e, "FAILED_PRECONDITION") && stillLive)
      ledger.violations.push(`read of ${id} answered destroyed; nobody deleted it`);
    else ledger.counts.failed++;
  }
}

export interface ReadCheck {
  checked: number;
  /** Acknowledged keys not readable, or read with other material, or deleted keys found: by peer. */
  problems: string[];
}

/**
 * Every live key read through every given client with its exact material; every acknowledged delete
 * NOT_FOUND or destroyed; uncertain keys either absent or with their material. A read that fails for another reason
 * is retried (bounded by `deadlineMs` for the whole check), then counted as a problem.
 */
export async function checkReadsEverywhere(
  ledger: Ledger,
  clients: Map<string, LockboxClient>,
  deadlineMs: number,
  concurrency = 32,
): Promise<ReadCheck> {
  const jobs: {
    peer: string;
    id: string;
    expect: Uint8Array | "absent" | "either";
    material?: Uint8Array;
  }[] = [];
  for (const peer of clients.keys()) {
    for (const [id, m] of ledger.live) jobs.push({ peer, id, expect: m });
    for (const id of ledger.deleted) jobs.push({ peer, id, expect: "absent" });
    for (const [id, m] of ledger.uncertain)
      jobs.push({ peer, id, expect: "either", ...(m !== undefined ? { material: m } : {}) });
  }
  const problems: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const job = jobs[next++];
      if (job === undefined) return;
      const client = clients.get(job.peer)!;
      for (;;) {
        try {
          const got = await client.getKey(job.id, { bypassCache: true });
          const want = job.expect instanceof Uint8Array ? job.expect : job.material;
          if (job.expect === "absent") problems.push(`${job.peer}: deleted ${job.id} is readable`);
          else if (want !== undefined && !Buffer.from(got.material).equals(Buffer.from(want)))
            problems.push(`${job.peer}: ${job.id} read with other material`);
          break;
        } catch (e) {
          // A deleted key reads NOT_FOUND, or FAILED_PRECONDITION "destroyed" while its tombstone is kept.
          if (isLockboxClientError(e, "NOT_FOUND") || isLockboxClientError(e, "FAILED_PRECONDITION")) {
            if (job.expect instanceof Uint8Array)
              problems.push(`${job.peer}: acknowledged ${job.id} answered ${(e as { code: string }).code}`);
            break;
          }
          if (Date.now() > deadlineMs) {
            problems.push(`${job.peer}: ${job.id} unreadable: ${String(e)}`);
            break;
          }
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { checked: jobs.length, problems };
}

export interface DiskView {
  /** peer -> partition -> sha256 over its (id, record) pairs in key order. */
  digests: Map<string, Map<number, string>>;
  /** peer -> number of handoff hints still held. */
  hints: Map<string, number>;
  /** peer -> partitions marked quarantined. */
  quarantined: Map<string, number[]>;
}

/**
 * Reads every stopped peer's store: a digest of each partition's records (the bytes replicas agree on
 * once anti-entropy has run: merge is deterministic), the hints still held, the quarantine marks.
 */
export async function readStores(
  cluster: ProcessCluster,
  partitionPower: number,
  only?: readonly string[],
): Promise<DiskView> {
  const width = partitionHexWidth(partitionPower);
  const view: DiskView = { digests: new Map(), hints: new Map(), quarantined: new Map() };
  for (const p of cluster.peers) {
    if (only !== undefined && !only.includes(p.id)) continue;
    if (p.running) throw new Error(`stop ${p.id} before reading its store`);
    const store = await openPeerStore(join(p.process.dir, "data"));
    try {
      const hashes = new Map<number, ReturnType<typeof createHash>>();
      for await (const [key, value] of store.sublevel("records").iterator()) {
        const partition = Number.parseInt(key.slice(0, width), 16);
        let h = hashes.get(partition);
        if (h === undefined) hashes.set(partition, (h = createHash("sha256")));
        h.update(key).update("\0").update(value).update("\0");
      }
      view.digests.set(p.id, new Map([...hashes].map(([part, h]) => [part, h.digest("hex")])));
      view.hints.set(p.id, (await store.sublevel("hints").keys().all()).length);
      const marks = await store
        .sublevel("meta")
        .keys({ gte: "replication-quarantine/", lt: "replication-quarantine0" })
        .all();
      view.quarantined.set(
        p.id,
        marks.map((k) => Number.parseInt(k.slice("replication-quarantine/".length), 16)),
      );
    } finally {
      await store.close();
    }
  }
  return view;
}

/**
 * Partitions whose holders disagree, or that not exactly `replicas` peers hold, or that any peer still
 * holds a hint for (a handoff copy not yet home). Empty once the replicas have converged.
 */
export function divergence(view: DiskView, replicas: number): string[] {
  const holders = new Map<number, { peer: string; digest: string }[]>();
  for (const [peer, parts] of view.digests)
    for (const [part, digest] of parts) {
      let l = holders.get(part);
      if (l === undefined) holders.set(part, (l = []));
      l.push({ peer, digest });
    }
  const out: string[] = [];
  for (const [part, l] of holders) {
    const distinct = new Set(l.map((x) => x.digest));
    if (distinct.size > 1)
      out.push(`partition ${part}: ${distinct.size} different contents on ${l.map((x) => x.peer).join(",")}`);
    if (l.length !== replicas)
      out.push(
        `partition ${part}: held by ${l.length} peers (${l.map((x) => x.peer).join(",")}), not ${replicas}`,
      );
  }
  for (const [peer, n] of view.hints) if (n > 0) out.push(`${peer}: ${n} handoff hints not yet delivered`);
  return out;
}

/**
 * Waits until the replicas agree on disk, bounded: up to `rounds` times, waits `waitMs` (anti-entropy
 * and handoff passes), stops every peer, reads their stores, and restarts them if they still differ.
 * Returns with every peer stopped, and what still differs (empty when converged), quarantine marks
 * included.
 */
export async function convergeOnDisk(
  cluster: ProcessCluster,
  partitionPower: number,
  replicas: number,
  rounds: number,
  waitMs: number,
  note: (line: string) => void = () => {},
): Promise<{ view: DiskView; left: string[] }> {
  for (let round = 1; ; round++) {
    await new Promise((r) => setTimeout(r, waitMs));
    for (const p of cluster.running) await cluster.stop(p.id);
    const view = await readStores(cluster, partitionPower);
    const left = divergence(view, replicas);
    for (const [peer, marks] of view.quarantined)
      if (marks.length > 0) left.push(`${peer}: partitions ${marks.join(",")} quarantined`);
    note(`convergence round ${round}: ${left.length} differences`);
    if (left.length === 0 || round >= rounds) return { view, left };
    for (const p of cluster.peers) await cluster.restart(p.id);
  }
}
