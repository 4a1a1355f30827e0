/**
 * A cluster of real lockbox peer processes on 127.0.0.1 for the replication acceptance tests and the
 * cluster benchmark. TCP proxies (tcp-fault-proxy.ts) stand between the processes:
 *
 * - a link proxy for every ordered pair of peers A -> B: A's config.json `peerDialOverrides` sends
 *   every channel A opens to B (raft, replication, attestation) through it, so `cutLink(A, B)` cuts
 *   only what A dials to B (B's own connections to A still go: a one-way fault), `cutPair(A, B)`
 *   both, `isolate(A)` every link of A both ways (a partition), and `cut(A)` every link into A;
 * - a member proxy per peer, the address it advertises (config `advertise`) and is added under. A
 *   peer started with an override for every other peer never dials it (tests can check its stats);
 *   it carries the links into a peer that joined after the dialler started (its config has no
 *   override for a peer that did not exist), and `cut(id)` cuts it too;
 * - a client proxy per peer, never cut: a stable address for clients across restarts.
 *
 * A restarted peer listens on a fresh port; every proxy in front of it is pointed at it.
 *
 * Link proxies exist for the `peers` started by start() (created before any of them, so every config
 * names all of them) and for the links from a peer added later to the peers then present.
 *
 * With `proxies: false` (the benchmark) there are no proxies: peers and clients dial the peers
 * directly, and no byte passes through the test process.
 *
 * The first peer is made by `lockbox init`; the others join it by the NOT ATTESTED test path
 * (AdminService.AddPeerUnattested, allowUnattestedMembersForTests on every peer), each in its own zone.
 * Attestation is not what these tests are about; its own tests use swtpm.
 */
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { LockboxClient, type LockboxClientOptions } from "../../src/client/index.js";
import { spawnPeer, startPeerInDir, type PeerProcess, type SpawnPeerOptions } from "./peer-process.js";
import { TcpFaultProxy, type CutMode } from "./tcp-fault-proxy.js";
import { joinerDirectory, UNATTESTED_FLAG } from "./unattested-member.js";
import { waitFor } from "./wait-for.js";

export { waitFor };

export interface ClusterPeer {
  readonly id: string;
  readonly zone: string;
  /**
   * Its member address (undefined with `proxies: false`): peers that have no link proxy to this one
   * reach it here.
   */
  readonly proxy: TcpFaultProxy | undefined;
  /** Clients reach this one through here: stable across restarts, never cut. */
  readonly clientProxy: TcpFaultProxy | undefined;
  readonly process: PeerProcess;
  /** False between kill() and restart(). */
  running: boolean;
}

export interface ProcessClusterOptions {
  /** Peers started (and joined) by start(); more may join with addPeer(). */
  peers: number;
  /** Edits every peer's config.json before its first start (tunables, timeouts). */
  configure?: (config: Record<string, unknown>) => void;
  /** Extra environment for every serve process. */
  env?: Record<string, string>;
  /** Options for node before the CLI script of every serve process (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** Bound on waiting for the members to be active (default 90 s: several processes start at once). */
  membersTimeoutMs?: number;
  /** Progress lines (the benchmark prints them). */
  progress?: (line: string) => void;
  /** False: no proxies (no cut(); a restarted peer's clients must be made anew). Default true. */
  proxies?: boolean;
}

export interface ListedPeer {
  peer_id: string;
  suffrage: string;
  state: string;
  address?: string;
  zone?: string;
}

export const PEER_ID_PREFIX = "peer-";

/**
 * Replication on (config `replication`), with passes fast enough that a test sees a restarted peer
 * catch up and handoff copies go home within seconds, and deadlines short enough to fail over.
 */
export const REPLICATION_FAST = {
  enabled: true,
  antiEntropyIntervalMs: 500,
  handoffIntervalMs: 500,
  writeDeadlineMs: 3_000,
  readDeadlineMs: 3_000,
};

/** One direction of a peer link: what `from` dials to reach `to`. */
export interface PeerLink {
  from: string;
  to: string;
}

export class ProcessCluster {
  readonly peers: ClusterPeer[] = [];
  /** "from>to" -> the proxy `from` dials `to` through. */
  readonly #links = new Map<string, TcpFaultProxy>();
  readonly #clients = new Set<LockboxClient>();
  readonly #options: ProcessClusterOptions;

  private constructor(options: ProcessClusterOptions) {
    this.#options = options;
  }

  /** Starts `options.peers` peers, joined into one cluster, and waits until all are active members. */
  static async start(options: ProcessClusterOptions): Promise<ProcessCluster> {
    const cluster = new ProcessCluster(options);
    try {
      if (options.proxies !== false) {
        const ids = Array.from({ length: options.peers }, (_, i) => `${PEER_ID_PREFIX}${i + 1}`);
        for (const from of ids) for (const to of ids) if (from !== to) await cluster.#linkProxy(from, to);
      }
      await cluster.#found();
      // The founder's own member record first: the leader adds it only while the control state is
      // empty (founding-duties.ts), so a member added before it would leave the founder off for good.
      await cluster.waitMembers(1, options.membersTimeoutMs ?? 90_000);
      for (let i = 2; i <= options.peers; i++) await cluster.addPeer();
      await cluster.waitMembers(options.peers, options.membersTimeoutMs ?? 90_000);
    } catch (e) {
      const listed = await cluster.listPeers().catch((x: unknown) => String(x));
      const tails = await cluster.logTails(10);
      await cluster.teardown();
      throw new Error(
        `cluster of ${options.peers} not started: ${String(e)}\nListPeers: ${JSON.stringify(listed)}\n${tails}`,
      );
    }
    return cluster;
  }

  peer(id: string): ClusterPeer {
    const p = this.peers.find((x) => x.id === id);
    if (p === undefined) throw new RangeError(`no peer ${id}`);
    return p;
  }

  get running(): ClusterPeer[] {
    return this.peers.filter((p) => p.running);
  }

  /**
   * A client of one peer (through its client proxy), or of every peer in turn (endpoints in
   * order, `ids` first). Closed by teardown().
   */
  client(ids?: string | string[], options: Partial<LockboxClientOptions> = {}): LockboxClient {
    const chosen = ids === undefined ? this.peers.map((p) => p.id) : typeof ids === "string" ? [ids] : ids;
    const admin = this.peers[0]!.process.admin;
    const c = new LockboxClient({
      endpoints: chosen.map((id) => {
        const p = this.peer(id);
        return p.clientProxy?.address ?? p.process.address;
      }),
      tls: { ca: admin.ca, cert: admin.cert, key: admin.key },
      ...options,
    });
    this.#clients.add(c);
    return c;
  }

  /** Starts a new peer in its own zone and has a running member add it. */
  async addPeer(): Promise<ClusterPeer> {
    const n = this.peers.length + 1;
    const id = `${PEER_ID_PREFIX}${n}`;
    const zone = `zone-${n}`;
    const founder = this.peers[0]!;
    const { proxy, clientProxy } = await this.#fronts();
    // Links among the peers start() made exist already; a peer beyond them gets links to those present.
    if (proxy !== undefined)
      for (const p of this.peers)
        if (!this.#links.has(`${id}>${p.id}`)) await this.#linkProxy(id, p.id, p.process.address);
    let process: PeerProcess;
    try {
      const dir = await joinerDirectory(founder.process, id);
      process = await startPeerInDir(dir, {
        ...this.#spawnOptions(),
        configure: (config) => {
          this.#configure(config, id, proxy);
          // The seed is the founder's proxied address, like every other address a peer dials.
          config.seedPeers = { [founder.id]: dialAddress(founder) };
        },
      });
    } catch (e) {
      await proxy?.close();
      await clientProxy?.close();
      throw e;
    }
    const peer: ClusterPeer = { id, zone, proxy, clientProxy, process, running: true };
    this.#pointProxiesAt(peer);
    this.peers.push(peer);
    this.#progress(`${id} serving at ${process.address} (peers dial ${dialAddress(peer)}); adding it`);
    const admin = this.client(
      this.running.filter((p) => p.id !== id).map((p) => p.id),
      { deadlineMs: 10_000 },
    );
    await admin.adminCall("AddPeerUnattested", {
      peer_id: id,
      address: dialAddress(peer),
      zone,
      weight: 1,
      certificate_pem: await fs.readFile(join(process.dir, "peer.crt"), "utf8"),
    });
    admin.close();
    this.#clients.delete(admin);
    return peer;
  }

  /** SIGKILL: no drain, no flush, as a power cut or an OOM kill. */
  async kill(id: string): Promise<void> {
    const p = this.peer(id);
    await p.process.kill("SIGKILL");
    p.running = false;
  }

  /** Serves the killed peer's directory again (a fresh port) and points every proxy in front of it there. */
  async restart(id: string): Promise<void> {
    const p = this.peer(id);
    await p.process.restart();
    this.#pointProxiesAt(p);
    p.running = true;
  }

  /** SIGTERM: a clean stop (the store closed), e.g. to read the peers' stores from the test. */
  async stop(id: string): Promise<void> {
    const p = this.peer(id);
    await p.process.kill("SIGTERM");
    p.running = false;
  }

  /**
   * Waits (bounded) until every running peer acknowledges a create: the first ring is committed a
   * moment after the members are (the leader builds it), and key calls fail UNAVAILABLE until then.
   */
  async waitKeysServed(timeoutMs: number): Promise<void> {
    for (const p of this.running) {
      const c = this.client(p.id, { deadlineMs: 5_000, attemptsMax: 1 });
      await waitFor(
        async () => {
          await c.createKey({ project: "cluster-ready", scope: p.id, name: "ready" });
          return true;
        },
        timeoutMs,
        `${p.id} acknowledges creates`,
      );
      c.close();
      this.#clients.delete(c);
    }
    this.#progress("every peer acknowledges creates");
  }

  /** The links that exist (from -> to), each a proxy of its own. */
  links(): PeerLink[] {
    return [...this.#links.keys()].map((k) => {
      const [from, to] = k.split(">") as [string, string];
      return { from, to };
    });
  }

  /** The proxy `from` dials `to` through (its stats, its cut mode). */
  linkProxy(from: string, to: string): TcpFaultProxy {
    const proxy = this.#links.get(`${from}>${to}`);
    if (proxy === undefined) throw new RangeError(`no link proxy ${from} -> ${to}`);
    return proxy;
  }

  /** Cuts one direction of one link: what `from` dials to `to` (raft, replication, attestation). */
  cutLink(from: string, to: string, mode: CutMode): void {
    this.linkProxy(from, to).cut(mode);
  }

  healLink(from: string, to: string): void {
    this.linkProxy(from, to).heal();
  }

  /** Cuts the link between `a` and `b` both ways. */
  cutPair(a: string, b: string, mode: CutMode): void {
    this.cutLink(a, b, mode);
    this.cutLink(b, a, mode);
  }

  /** Cuts every link of `id`, both ways: a partition of one peer from the rest. Returns the links cut. */
  isolate(id: string, mode: CutMode): PeerLink[] {
    const cut = this.links().filter((l) => l.from === id || l.to === id);
    for (const l of cut) this.cutLink(l.from, l.to, mode);
    this.#memberProxy(id).cut(mode);
    return cut;
  }

  /** Cuts every link into `id` (raft and replication from every other peer); its own calls out still go. */
  cut(id: string, mode: CutMode): void {
    this.#memberProxy(id).cut(mode);
    for (const l of this.links()) if (l.to === id) this.cutLink(l.from, l.to, mode);
  }

  /** Heals every link of `id`, both ways. */
  heal(id: string): void {
    this.peer(id).proxy?.heal();
    for (const l of this.links()) if (l.from === id || l.to === id) this.healLink(l.from, l.to);
  }

  healAll(): void {
    for (const p of this.peers) p.proxy?.heal();
    for (const proxy of this.#links.values()) proxy.heal();
  }

  /** ListPeers through any running peer. */
  async listPeers(): Promise<{ peers: ListedPeer[]; leader: string }> {
    const c = this.client(
      this.running.map((p) => p.id),
      { deadlineMs: 5_000 },
    );
    try {
      return await c.adminCall<{ peers: ListedPeer[]; leader: string }>("ListPeers", {});
    } finally {
      c.close();
      this.#clients.delete(c);
    }
  }

  /** Waits (bounded) until `count` members are active and a leader is known. */
  async waitMembers(count: number, timeoutMs: number): Promise<void> {
    await waitFor(
      async () => {
        const listed = await this.listPeers();
        return listed.leader !== "" && listed.peers.filter((p) => p.state === "active").length >= count;
      },
      timeoutMs,
      `${count} active members`,
    );
    this.#progress(`${count} members active`);
  }

  /** The last `lines` lines of every peer's log, for a failing test's output. */
  async logTails(lines = 20): Promise<string> {
    const out: string[] = [];
    for (const p of this.peers) {
      const log = await p.process.log().catch(() => "");
      out.push(`--- ${p.id} (${p.process.dir})\n${log.split("\n").slice(-lines).join("\n")}`);
    }
    return out.join("\n");
  }

  /**
   * Stops everything and removes the peers' directories; with `keepLogsIn`, first copies each peer's
   * log and its LevelDB's LOG there (a failing test says where).
   */
  async teardown(keepLogsIn?: string): Promise<void> {
    for (const c of this.#clients) c.close();
    this.#clients.clear();
    if (keepLogsIn !== undefined) {
      await fs.mkdir(keepLogsIn, { recursive: true });
      for (const p of this.peers) {
        await fs.copyFile(join(p.process.dir, "peer.log"), join(keepLogsIn, `${p.id}.log`)).catch(() => {});
        // LevelDB's own log: when its flushes and compactions ran (benchmark bursts, store errors).
        await fs
          .copyFile(join(p.process.dir, "data", "LOG"), join(keepLogsIn, `${p.id}.leveldb.log`))
          .catch(() => {});
      }
    }
    for (const p of [...this.peers].reverse()) {
      await p.process.teardown();
      await p.proxy?.close();
      await p.clientProxy?.close();
    }
    for (const proxy of this.#links.values()) await proxy.close();
    this.#links.clear();
  }

  async #found(): Promise<void> {
    const id = `${PEER_ID_PREFIX}1`;
    const { proxy, clientProxy } = await this.#fronts();
    let process: PeerProcess;
    try {
      process = await spawnPeer({
        peerId: id,
        ...this.#spawnOptions(),
        configure: (config) => this.#configure(config, id, proxy),
      });
    } catch (e) {
      await proxy?.close();
      await clientProxy?.close();
      throw e;
    }
    // The founding peer is in zone-1 (founding-duties.ts FOUNDING_ZONE).
    const peer: ClusterPeer = { id, zone: "zone-1", proxy, clientProxy, process, running: true };
    this.#pointProxiesAt(peer);
    this.peers.push(peer);
    this.#progress(`${id} (founder) serving at ${process.address} (peers dial ${dialAddress(peer)})`);
  }

  #spawnOptions(): SpawnPeerOptions {
    return {
      ...(this.#options.env !== undefined ? { env: this.#options.env } : {}),
      ...(this.#options.nodeArgs !== undefined ? { nodeArgs: this.#options.nodeArgs } : {}),
      readyTimeoutMs: 60_000,
    };
  }

  /** The two proxies in front of a new peer (upstream set once it listens), or none. */
  async #fronts(): Promise<{ proxy: TcpFaultProxy | undefined; clientProxy: TcpFaultProxy | undefined }> {
    if (this.#options.proxies === false) return { proxy: undefined, clientProxy: undefined };
    const proxy = await TcpFaultProxy.start({ upstream: "127.0.0.1:1" });
    const clientProxy = await TcpFaultProxy.start({ upstream: "127.0.0.1:1" }).catch(async (e: unknown) => {
      await proxy.close();
      throw e;
    });
    return { proxy, clientProxy };
  }

  /** A new link proxy from -> to; `upstream` unset: `to` does not listen yet (pointProxiesAt sets it). */
  async #linkProxy(from: string, to: string, upstream = "127.0.0.1:1"): Promise<void> {
    this.#links.set(`${from}>${to}`, await TcpFaultProxy.start({ upstream }));
  }

  /** Every proxy in front of `p` forwards to where it listens now. */
  #pointProxiesAt(p: ClusterPeer): void {
    p.proxy?.setUpstream(p.process.address);
    p.clientProxy?.setUpstream(p.process.address);
    for (const [key, proxy] of this.#links)
      if (key.endsWith(`>${p.id}`)) proxy.setUpstream(p.process.address);
  }

  #memberProxy(id: string): TcpFaultProxy {
    const proxy = this.peer(id).proxy;
    if (proxy === undefined) throw new Error("this cluster has no fault proxies");
    return proxy;
  }

  #configure(config: Record<string, unknown>, id: string, proxy: TcpFaultProxy | undefined): void {
    const overrides = Object.fromEntries(
      [...this.#links]
        .filter(([key]) => key.startsWith(`${id}>`))
        .map(([key, l]) => [key.slice(id.length + 1), l.address]),
    );
    Object.assign(
      config,
      UNATTESTED_FLAG,
      proxy !== undefined ? { advertise: proxy.address, peerDialOverrides: overrides } : {},
    );
    this.#options.configure?.(config);
  }

  #progress(line: string): void {
    this.#options.progress?.(line);
  }
}

/** Where other peers reach `p`: its fault proxy, or the peer itself. */
function dialAddress(p: ClusterPeer): string {
  return p.proxy?.address ?? p.process.address;
}

/**
 * A teardown for ava: the cluster goes away; if the test failed, the peers' logs are kept in a
 * fresh temp directory, named in the test's output.
 */
export function clusterTeardown(
  t: { passed: boolean; log(...v: unknown[]): void; title: string },
  cluster: ProcessCluster,
): () => Promise<void> {
  return async () => {
    const keep = t.passed ? undefined : await fs.mkdtemp(join(tmpdir(), "lockbox-failed-cluster-"));
    if (keep !== undefined) t.log(`peer logs kept in ${keep}`);
    await cluster.teardown(keep);
  };
}
