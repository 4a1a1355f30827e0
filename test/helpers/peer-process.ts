/**
 * A real lockbox peer in a child process, for end-to-end tests and the
 * benchmark: `lockbox init` in a fresh temp directory, then `lockbox serve
 * --listen 127.0.0.1:0 --json`, waiting for its ready line. The peer's stdout
 * and stderr go to DIR/peer.log (so tests can check logs for leaks).
 *
 * Every spawned peer is also killed when the test process exits, so a failing
 * test cannot leave one behind.
 */
import type { ChildProcess } from "node:child_process";
import { createWriteStream, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

import { LockboxClient, type LockboxClientOptions } from "../../src/client/index.js";
import { CLI_MAIN, runCli, runCliJson, withoutLockboxVars } from "./cli-process.js";
import { spawnOwned } from "./spawn-owned.js";

export interface IdentityFiles {
  name: string;
  ca: string;
  cert: string;
  key: string;
}

export interface PeerProcess {
  /** "127.0.0.1:PORT" of the running serve process; changes on restart(). */
  readonly address: string;
  /** "127.0.0.1:PORT" of its Barbican REST listener, when the config has a `rest` section. */
  readonly restAddress: string | undefined;
  /** The init directory: config, CA, identities, master key file, data/, peer.log. */
  readonly dir: string;
  readonly pid: number | undefined;
  /** The admin identity `init` created. */
  readonly admin: IdentityFiles;
  /** Connection flags for the CLI as the admin identity. */
  cliFlags(identity?: IdentityFiles): string[];
  /** A LockboxClient as `identity` (default admin). The caller closes it (or teardown does). */
  client(identity?: IdentityFiles, options?: Partial<LockboxClientOptions>): LockboxClient;
  /** `lockbox identity issue` for a new service (or admin) identity. */
  issueIdentity(name: string, role: "service" | "admin", projects: string[]): Promise<IdentityFiles>;
  /** Sends `signal` and waits for the process to exit (bounded). */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts serve again on the same directory (a fresh port) and waits until ready. */
  restart(): Promise<void>;
  /** Kills the peer if running, closes clients, removes the directory. */
  teardown(): Promise<void>;
  /** The peer's log so far. */
  log(): Promise<string>;
}

export interface SpawnPeerOptions {
  peerId?: string;
  /** Extra arguments for `init` (e.g. --tpm, --shares). */
  initArgs?: string[];
  /** Extra arguments for `serve`. */
  serveArgs?: string[];
  readyTimeoutMs?: number;
  /** Fields merged into config.json after `init`, before the first serve (e.g. test-only flags). */
  configPatch?: Record<string, unknown>;
  /** Extra environment for the serve process (LOCKBOX_LOG_LEVEL, GRPC_TRACE, ...). */
  env?: Record<string, string>;
  /** Options for node itself before the CLI's script (e.g. --cpu-prof, which NODE_OPTIONS refuses). */
  nodeArgs?: string[];
  /** Edits config.json between `init` and the first start (tunables: log window, metrics). */
  configure?: (config: Record<string, unknown>) => void;
  /** Edits config.json after `init` (e.g. adds a `rest` section); gets the init directory. */
  editConfig?: (config: Record<string, unknown>, dir: string) => Promise<void> | void;
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

export async function spawnPeer(options: SpawnPeerOptions = {}): Promise<PeerProcess> {
  const dir = await fs.mkdtemp(join(tmpdir(), "lockbox-peer-"));
  const initArgs = ["init", "--dir", dir, "--json"];
  if (options.peerId !== undefined) initArgs.push("--peer-id", options.peerId);
  initArgs.push(...(options.initArgs ?? []));
  const init = await runCli(initArgs);
  if (init.code !== 0) {
    await fs.rm(dir, { recursive: true, force: true });
    throw new Error(`lockbox init failed (${init.code}): ${init.stderr.trim()}`);
  }
  if (options.configPatch !== undefined) {
    const path = join(dir, "config.json");
    const config = JSON.parse(await fs.readFile(path, "utf8")) as Record<string, unknown>;
    await fs.writeFile(path, JSON.stringify({ ...config, ...options.configPatch }, null, 2));
  }
  if (options.editConfig !== undefined) {
    const path = join(dir, "config.json");
    const config = JSON.parse(await fs.readFile(path, "utf8")) as Record<string, unknown>;
    await options.editConfig(config, dir);
    await fs.writeFile(path, JSON.stringify(config, null, 2));
  }
  return startPeerInDir(dir, options);
}

/** Serves an existing peer directory (made by init, or by a test helper for a joining peer). */
export async function startPeerInDir(dir: string, options: SpawnPeerOptions = {}): Promise<PeerProcess> {
  const peer = new SpawnedPeer(dir, options);
  try {
    if (options.configure !== undefined) {
      const path = join(dir, "config.json");
      const config = JSON.parse(await fs.readFile(path, "utf8")) as Record<string, unknown>;
      options.configure(config);
      await fs.writeFile(path, JSON.stringify(config, null, 2));
    }
    await peer.start();
  } catch (err) {
    await peer.teardown();
    throw err;
  }
  return peer;
}

class SpawnedPeer implements PeerProcess {
  address = "";
  restAddress: string | undefined;
  readonly admin: IdentityFiles;
  #child: ChildProcess | undefined;
  #exited: Promise<void> | undefined;
  readonly #clients = new Set<LockboxClient>();
  #identityCount = 0;

  constructor(
    readonly dir: string,
    private readonly options: SpawnPeerOptions,
  ) {
    this.admin = {
      name: "admin",
      ca: join(dir, "ca.crt"),
      cert: join(dir, "admin.crt"),
      key: join(dir, "admin.key"),
    };
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  async start(): Promise<void> {
    if (this.#child !== undefined) throw new Error("peer already running");
    const logFile = createWriteStream(join(this.dir, "peer.log"), { flags: "a", mode: 0o600 });
    await new Promise((resolve) => logFile.once("open", resolve));
    const args = [
      "serve",
      "--dir",
      this.dir,
      "--listen",
      "127.0.0.1:0",
      "--json",
      ...(this.options.editConfig !== undefined ? ["--rest-listen", "127.0.0.1:0"] : []),
      ...(this.options.serveArgs ?? []),
    ];
    const child = spawnOwned(process.execPath, [...(this.options.nodeArgs ?? []), CLI_MAIN, ...args], {
      env: { ...withoutLockboxVars(process.env), ...this.options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    live.add(child);
    this.#child = child;
    this.#exited = new Promise((resolve) =>
      child.once("exit", () => {
        live.delete(child);
        resolve();
      }),
    );
    child.stderr!.pipe(logFile, { end: false });
    const lines = createInterface({ input: child.stdout! });
    const timeoutMs = this.options.readyTimeoutMs ?? 60_000;
    const ready = await new Promise<{ address: string; restAddress?: string }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`peer not ready within ${timeoutMs} ms`)), timeoutMs);
      void this.#exited!.then(() => reject(new Error(`peer exited before ready (code ${child.exitCode})`)));
      lines.on("line", (line) => {
        logFile.write(line + "\n");
        const address = parseReady(line);
        if (address !== undefined) {
          clearTimeout(timer);
          const rest = (JSON.parse(line) as { restAddress?: unknown }).restAddress;
          resolve({ address, ...(typeof rest === "string" ? { restAddress: rest } : {}) });
        }
      });
    }).catch(async (err: Error) => {
      child.kill("SIGKILL");
      throw new Error(`${err.message}; log:\n${await this.log().catch(() => "")}`);
    });
    this.address = ready.address;
    this.restAddress = ready.restAddress;
    void this.#exited.then(() => logFile.end());
  }

  cliFlags(identity: IdentityFiles = this.admin): string[] {
    return [
      "--endpoint",
      this.address,
      "--ca",
      identity.ca,
      "--cert",
      identity.cert,
      "--client-key",
      identity.key,
    ];
  }

  client(identity: IdentityFiles = this.admin, options: Partial<LockboxClientOptions> = {}): LockboxClient {
    const c = new LockboxClient({
      endpoints: [this.address],
      tls: { ca: identity.ca, cert: identity.cert, key: identity.key },
      ...options,
    });
    this.#clients.add(c);
    return c;
  }

  async issueIdentity(name: string, role: "service" | "admin", projects: string[]): Promise<IdentityFiles> {
    const out = join(this.dir, `identities-${++this.#identityCount}`);
    await fs.mkdir(out, { mode: 0o700 });
    const args = [
      "identity",
      "issue",
      "--dir",
      this.dir,
      // Issued by the running peer from the control state's CA key, and recorded cluster-wide.
      "--endpoint",
      this.address,
      "--name",
      name,
      "--role",
      role,
      "--out",
      out,
      "--json",
    ];
    for (const p of projects) args.push("--project", p);
    await runCliJson(args);
    return {
      name,
      ca: join(this.dir, "ca.crt"),
      cert: join(out, `${name}.crt`),
      key: join(out, `${name}.key`),
    };
  }

  async kill(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    for (const c of this.#clients) c.close();
    this.#clients.clear();
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    const exited = await Promise.race([
      this.#exited!.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 10_000)),
    ]);
    if (!exited) {
      child.kill("SIGKILL");
      await this.#exited;
    }
    this.#child = undefined;
  }

  async restart(): Promise<void> {
    await this.kill("SIGTERM");
    await this.start();
  }

  async teardown(): Promise<void> {
    await this.kill("SIGKILL");
    await fs.rm(this.dir, { recursive: true, force: true });
  }

  log(): Promise<string> {
    return fs.readFile(join(this.dir, "peer.log"), "utf8");
  }
}

/** The address of serve's `{"event":"ready","address":...}` line, if `line` is one. */
export function parseReady(line: string): string | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const v = JSON.parse(line) as { event?: unknown; address?: unknown };
    return v.event === "ready" && typeof v.address === "string" ? v.address : undefined;
  } catch {
    return undefined;
  }
}
