/**
 * Test and benchmark harness: real control-node processes on 127.0.0.1, each with its own LevelDB
 * directory and peer certificate (mTLS between them), spoken to over the test-only ControlService. Every process started here is registered so that
 * stopAll() (call it from t.teardown) kills it, also when the test fails half way.
 */
import * as grpc from "@grpc/grpc-js";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { spawnOwned } from "../helpers/spawn-owned.js";
import { loadControlService, LEADER_HINT_METADATA_KEY } from "./control-node/control-proto.js";
import { testCa, writePeerTls } from "./peer-tls.js";
import type { PeerTransportCounters } from "../../src/raft/grpc-peer-transport.js";

const MAIN = fileURLToPath(new URL("./control-node/control-node-main.js", import.meta.url));
const READY_TIMEOUT_MS = 15_000;
const CALL_DEADLINE_MS = 5_000;

export interface ControlStatus {
  id: string;
  /** "" when no leader is known. */
  leader: string;
  term: number;
  role: string;
  voters: string[];
  learners: string[];
  commit: number;
  applied: number;
  snapshot_index: number;
  transport: TransportCounters;
}

/** The peer transport's counters as the test ControlService reports them (refusal kinds arrive as strings). */
export type TransportCounters = Omit<PeerTransportCounters, "snapshotsRefused"> & {
  snapshotsRefused: Record<string, number>;
};

/** Reserves a free loopback port by binding port 0; the caller retries if it is taken meanwhile. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() =>
        typeof addr === "object" && addr !== null ? resolve(addr.port) : reject(new Error("no port")),
      );
    });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class ControlProcess {
  child: ChildProcess | undefined;
  readonly stderrTail: string[] = [];
  #client: grpc.Client | undefined;
  #caPem: string | undefined;

  constructor(
    readonly id: string,
    readonly port: number,
    readonly dir: string,
    readonly args: string[],
  ) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Spawns the process and resolves once it printed its JSON ready line. */
  async start(extraEnv: Record<string, string> = {}): Promise<void> {
    if (this.running) throw new Error(`node ${this.id} already running`);
    const tlsDir = join(this.dir, "tls");
    await writePeerTls(tlsDir, this.id);
    this.#caPem ??= (await testCa()).certificatePem;
    const child = spawnOwned(process.execPath, [MAIN, "--tls-dir", tlsDir, ...this.args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...extraEnv },
    });
    this.child = child;
    const errLines = createInterface({ input: child.stderr! });
    errLines.on("line", (l) => {
      this.stderrTail.push(l);
      if (this.stderrTail.length > 500) this.stderrTail.shift();
      if (process.env.LOCKBOX_TEST_VERBOSE) process.stderr.write(`[${this.id}] ${l}\n`);
    });
    const outLines = createInterface({ input: child.stdout! });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new Error(`node ${this.id} not ready in ${READY_TIMEOUT_MS} ms: ${this.stderrTail.join("\n")}`),
        );
      }, READY_TIMEOUT_MS);
      outLines.on("line", (l) => {
        try {
          const msg = JSON.parse(l) as { ready?: boolean };
          if (msg.ready === true) {
            clearTimeout(timer);
            resolve();
          }
        } catch {
          // Not the ready line: ignore.
        }
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(
          new Error(`node ${this.id} exited (${code ?? signal}) before ready: ${this.stderrTail.join("\n")}`),
        );
      });
    });
  }

  /** Sends `signal` and waits for the process to be gone. */
  async kill(signal: NodeJS.Signals): Promise<void> {
    this.closeClient();
    const child = this.child;
    if (child === undefined || !this.running) return;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill(signal);
    // A process that ignores SIGTERM for 10 s gets SIGKILL.
    const escalate = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(escalate);
  }

  /** Exit code of the last run, or the signal name. */
  get exitStatus(): number | string | null {
    return this.child?.exitCode ?? this.child?.signalCode ?? null;
  }

  client(): grpc.Client {
    if (this.#client === undefined) {
      const ControlService = loadControlService();
      // The test ControlService asks for no client certificate; the server's is checked as usual.
      if (this.#caPem === undefined) throw new Error(`node ${this.id} was never started`);
      this.#client = new ControlService(this.address, grpc.credentials.createSsl(Buffer.from(this.#caPem)));
    }
    return this.#client;
  }

  closeClient(): void {
    this.#client?.close();
    this.#client = undefined;
  }

  call<Res>(method: string, req: object, deadlineMs = CALL_DEADLINE_MS): Promise<Res> {
    const client = this.client() as unknown as Record<
      string,
      (
        req: object,
        md: grpc.Metadata,
        opts: grpc.CallOptions,
        cb: (err: grpc.ServiceError | null, res: Res) => void,
      ) => void
    >;
    return new Promise((resolve, reject) => {
      client[method]!.call(
        this.client(),
        req,
        new grpc.Metadata(),
        { deadline: Date.now() + deadlineMs },
        (err, res) => (err ? reject(err) : resolve(res)),
      );
    });
  }

  status(): Promise<ControlStatus> {
    return this.call<ControlStatus>("Status", {});
  }
}

/** The leader id named by a FAILED_PRECONDITION answer, or "". */
export function leaderHint(err: unknown): string {
  const md = (err as grpc.ServiceError | undefined)?.metadata;
  const v = md?.get(LEADER_HINT_METADATA_KEY)[0];
  return typeof v === "string" ? v : "";
}

export class ControlCluster {
  readonly nodes = new Map<string, ControlProcess>();
  readonly root: string;
  /** Where the last successful onLeader() call went: tried first next time. */
  #leaderGuess = "";

  constructor(prefix = "lockbox-raft-") {
    this.root = mkdtempSync(join(tmpdir(), prefix));
  }

  /**
   * Starts `count` voters 1..count. Ports are picked free and the whole start is retried (bounded)
   * if a port got taken between picking and binding.
   */
  async startVoters(count: number, extraArgs: string[] = []): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const ports = await Promise.all(Array.from({ length: count }, () => freePort()));
      const peers = ports.map((p, i) => `${i + 1}=127.0.0.1:${p}`).join(",");
      for (let i = 0; i < count; i++) {
        const id = String(i + 1);
        const dir = join(this.root, `n${id}`);
        this.nodes.set(
          id,
          new ControlProcess(id, ports[i]!, dir, [
            "--id",
            id,
            "--dir",
            dir,
            "--listen",
            `127.0.0.1:${ports[i]}`,
            "--peers",
            peers,
            ...extraArgs,
          ]),
        );
      }
      try {
        await Promise.all([...this.nodes.values()].map((n) => n.start()));
        return;
      } catch (e) {
        await this.killAll("SIGKILL");
        this.nodes.clear();
        rmSync(this.root, { recursive: true, force: true });
        if (attempt >= 2) throw e;
      }
    }
  }

  /** Starts a new learner-to-be process with --join, knowing the current members' addresses. */
  async startJoiner(id: string, extraArgs: string[] = []): Promise<ControlProcess> {
    const port = await freePort();
    const peers = [...this.nodes.values()].map((n) => `${n.id}=${n.address}`).join(",");
    const dir = join(this.root, `n${id}`);
    const node = new ControlProcess(id, port, dir, [
      "--id",
      id,
      "--dir",
      dir,
      "--listen",
      `127.0.0.1:${port}`,
      "--peers",
      `${peers},${id}=127.0.0.1:${port}`,
      "--join",
      ...extraArgs,
    ]);
    this.nodes.set(id, node);
    await node.start();
    return node;
  }

  node(id: string): ControlProcess {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  running(): ControlProcess[] {
    return [...this.nodes.values()].filter((n) => n.running);
  }

  /**
   * Waits until every running node among `ids` (default: all running) agrees on one leader that is
   * itself running and says it is leader. Bounded by `timeoutMs`.
   */
  async waitLeader(timeoutMs = 15_000, ids?: string[]): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      const nodes = ids ? ids.map((i) => this.node(i)) : this.running();
      // A joiner not yet added has an empty configuration and no say in who leads.
      const statuses = (await Promise.all(nodes.map((n) => n.status().catch(() => undefined)))).filter(
        (s) => s === undefined || s.voters.length > 0,
      );
      const leaders = new Set(statuses.map((s) => s?.leader ?? ""));
      last = JSON.stringify(statuses);
      if (leaders.size === 1 && !leaders.has("")) {
        const leader = [...leaders][0]!;
        const ls = statuses.find((s) => s?.id === leader);
        if (ls?.role === "leader") return leader;
      }
      await sleep(100);
    }
    throw new Error(`no agreed leader within ${timeoutMs} ms: ${last}`);
  }

  /**
   * Sends a control call to the leader, following leader hints and retrying while there is none.
   * Resolves with the answer; rejects with the last error after `timeoutMs`. A retried proposal may
   * apply twice: callers use idempotent commands (set) for that reason.
   */
  async onLeader<Res>(method: string, req: object, timeoutMs = 15_000): Promise<Res> {
    const deadline = Date.now() + timeoutMs;
    let target =
      this.#leaderGuess !== "" && this.nodes.get(this.#leaderGuess)?.running
        ? this.#leaderGuess
        : (this.running()[0]?.id ?? "1");
    let lastErr: unknown;
    while (Date.now() < deadline) {
      const node = this.nodes.get(target);
      if (node?.running) {
        try {
          const res = await node.call<Res>(method, req);
          this.#leaderGuess = target;
          return res;
        } catch (e) {
          lastErr = e;
          const hint = leaderHint(e);
          if (hint !== "" && hint !== target && this.nodes.get(hint)?.running) {
            target = hint;
            continue;
          }
        }
      }
      const others = this.running().map((n) => n.id);
      target = others[(others.indexOf(target) + 1) % others.length] ?? target;
      await sleep(100);
    }
    throw lastErr ?? new Error(`${method}: no leader within ${timeoutMs} ms`);
  }

  async killAll(signal: NodeJS.Signals): Promise<void> {
    await Promise.all([...this.nodes.values()].map((n) => n.kill(signal)));
  }

  /** For teardown: kill everything, remove the data directories. */
  async stopAll(): Promise<void> {
    await this.killAll("SIGKILL");
    rmSync(this.root, { recursive: true, force: true });
  }

  stderrOf(id: string): string {
    return this.nodes.get(id)?.stderrTail.join("\n") ?? "";
  }
}

export const CALL_DEADLINE = CALL_DEADLINE_MS;
