/**
 * A real OpenStack Keystone (Debian's keystone package, served by uWSGI) for tests, on
 * 127.0.0.1 with a free port, from a private temp folder (SQLite, Fernet keys, no /etc/keystone):
 * as ../shared/notes/openstack.md measured it. It bootstraps an admin, then makes what a test
 * names: projects, users with a role in a project, the `lockbox` service user (admin role in
 * project `service`, so it may validate tokens), and a key-manager catalog entry.
 *
 * Stopped by the PID uWSGI wrote; also killed when the test process exits.
 */
import type { ChildProcess } from "node:child_process";
import { execFile } from "node:child_process";
import { createServer } from "node:net";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnOwned } from "./spawn-owned.js";

export const ADMIN_PASSWORD = "admin-secret";

export interface KeystoneUser {
  name: string;
  password: string;
  project: string;
  projectId: string;
}

export interface Keystone {
  /** "http://127.0.0.1:PORT/v3" */
  readonly url: string;
  readonly dir: string;
  /** A user of a new (or existing) project with `role`. */
  user(name: string, project: string, role?: string): Promise<KeystoneUser>;
  /** A project-scoped token of `user`. */
  token(user: KeystoneUser): Promise<string>;
  /** Revokes a token (DELETE /v3/auth/tokens). */
  revoke(token: string): Promise<void>;
  /** Registers the key-manager service at `url` in the catalog (what the barbican CLI looks up). */
  registerKeyManager(url: string): Promise<void>;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of live) c.kill("SIGKILL");
});

function run(cmd: string, args: string[], timeoutMs = 120_000): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, _stdout, stderr) => {
      if (err === null) return resolve();
      if ((err as NodeJS.ErrnoException).code === "ENOENT")
        return reject(
          new Error(`${cmd} is not installed: run scripts/install-deps.sh (Debian's keystone, uwsgi)`),
        );
      reject(new Error(`${cmd} ${args.join(" ")} failed: ${stderr.slice(-2000)}`));
    });
  });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface StartKeystoneOptions {
  /** Token lifetime (Keystone's [token] expiration), seconds. */
  tokenSeconds?: number;
}

export async function startKeystone(options: StartKeystoneOptions = {}): Promise<Keystone> {
  const dir = await fs.mkdtemp(join(tmpdir(), "lockbox-keystone-"));
  await fs.mkdir(join(dir, "fernet"), { mode: 0o700 });
  await fs.mkdir(join(dir, "credential"), { mode: 0o700 });
  await fs.mkdir(join(dir, "policy.d"));
  await fs.writeFile(join(dir, "policy.json"), "{}\n");
  const conf = join(dir, "keystone.conf");
  await fs.writeFile(
    conf,
    [
      "[DEFAULT]",
      `log_dir = ${dir}`,
      "[database]",
      `connection = sqlite:///${join(dir, "keystone.db")}`,
      "[token]",
      "provider = fernet",
      `expiration = ${options.tokenSeconds ?? 3600}`,
      "[fernet_tokens]",
      `key_repository = ${join(dir, "fernet")}`,
      "[credential]",
      `key_repository = ${join(dir, "credential")}`,
      "[oslo_policy]",
      `policy_file = ${join(dir, "policy.json")}`,
      `policy_dirs = ${join(dir, "policy.d")}`,
      "",
    ].join("\n"),
  );
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/v3`;
  const manage = (...args: string[]) => run("keystone-manage", ["--config-file", conf, ...args]);
  await manage("db_sync");
  // Concurrent writes to SQLite fail with "database is locked" without WAL.
  await run("/usr/bin/python3", [
    "-c",
    `import sqlite3; sqlite3.connect(${JSON.stringify(join(dir, "keystone.db"))}).execute("PRAGMA journal_mode=WAL")`,
  ]);
  await manage("fernet_setup", "--keystone-user", "root", "--keystone-group", "root");
  await manage("credential_setup", "--keystone-user", "root", "--keystone-group", "root");
  await manage(
    "bootstrap",
    "--bootstrap-password",
    ADMIN_PASSWORD,
    "--bootstrap-admin-url",
    `${url}/`,
    "--bootstrap-internal-url",
    `${url}/`,
    "--bootstrap-public-url",
    `${url}/`,
    "--bootstrap-region-id",
    "RegionOne",
  );
  const log = await fs.open(join(dir, "uwsgi.log"), "a");
  const child = spawnOwned(
    "uwsgi_python3",
    [
      "--http-socket",
      `127.0.0.1:${port}`,
      "--wsgi-file",
      "/usr/bin/keystone-wsgi-public",
      "--env",
      `OS_KEYSTONE_CONFIG_FILES=${conf}`,
      "--master",
      "--processes",
      "2",
      "--threads",
      "1",
      "--lazy-apps",
      "--add-header",
      "Connection: close",
      "--buffer-size",
      "65535",
      "--die-on-term",
      "--need-app",
      "--pidfile",
      join(dir, "uwsgi.pid"),
    ],
    { stdio: ["ignore", log.fd, log.fd] },
  );
  live.add(child);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const ks = new RealKeystone(url, dir, child, exited, log);
  try {
    await ks.waitReady();
    await ks.setup();
  } catch (e) {
    await ks.stop();
    throw e;
  }
  return ks;
}

interface Answer {
  status: number;
  headers: Headers;
  json: Record<string, unknown>;
}

class RealKeystone implements Keystone {
  private admin = { token: "", at: 0 };
  private readonly projects = new Map<string, string>();
  private readonly roles = new Map<string, string>();

  constructor(
    readonly url: string,
    readonly dir: string,
    private readonly child: ChildProcess,
    private readonly exited: Promise<void>,
    private readonly log: fs.FileHandle,
  ) {}

  async waitReady(): Promise<void> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        const r = await fetch(`${this.url}/`);
        if (r.status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline || this.child.exitCode !== null)
        throw new Error(
          `keystone did not start: ${await fs.readFile(join(this.dir, "uwsgi.log"), "utf8").catch(() => "")}`,
        );
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  async setup(): Promise<void> {
    for (const r of (await this.call("GET", "/roles")).json.roles as { id: string; name: string }[])
      this.roles.set(r.name, r.id);
    for (const p of (await this.call("GET", "/projects")).json.projects as { id: string; name: string }[])
      this.projects.set(p.name, p.id);
  }

  async user(name: string, project: string, role = "member"): Promise<KeystoneUser> {
    const projectId = await this.project(project);
    let roleId = this.roles.get(role);
    if (roleId === undefined) {
      roleId = ((await this.call("POST", "/roles", { role: { name: role } })).json.role as { id: string }).id;
      this.roles.set(role, roleId);
    }
    const password = `pw-${name}-${Math.random().toString(36).slice(2)}`;
    const u = await this.call("POST", "/users", { user: { name, password, domain_id: "default" } });
    const userId = (u.json.user as { id: string }).id;
    await this.call("PUT", `/projects/${projectId}/users/${userId}/roles/${roleId}`);
    return { name, password, project, projectId };
  }

  async token(user: KeystoneUser): Promise<string> {
    return this.passwordToken(user.name, user.password, user.project);
  }

  async revoke(token: string): Promise<void> {
    const r = await fetch(`${this.url}/auth/tokens`, {
      method: "DELETE",
      headers: { "X-Auth-Token": await this.adminToken(), "X-Subject-Token": token },
    });
    if (r.status !== 204) throw new Error(`revoke: ${r.status}`);
  }

  async registerKeyManager(url: string): Promise<void> {
    const s = await this.call("POST", "/services", { service: { name: "barbican", type: "key-manager" } });
    const serviceId = (s.json.service as { id: string }).id;
    for (const iface of ["public", "internal", "admin"])
      await this.call("POST", "/endpoints", {
        endpoint: { service_id: serviceId, interface: iface, url, region_id: "RegionOne" },
      });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const pid = Number((await fs.readFile(join(this.dir, "uwsgi.pid"), "utf8").catch(() => "")).trim());
      // uWSGI's master (its pidfile), else the process we started.
      if (Number.isSafeInteger(pid) && pid > 1 && pid === this.child.pid) process.kill(pid, "SIGTERM");
      else this.child.kill("SIGTERM");
      const done = await Promise.race([
        this.exited.then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 10_000)),
      ]);
      if (!done) this.child.kill("SIGKILL");
      await this.exited;
    }
    live.delete(this.child);
    await this.log.close().catch(() => {});
    await fs.rm(this.dir, { recursive: true, force: true });
  }

  /** Tokens may live only seconds here (a test watches one expire): the admin's is renewed often. */
  private async adminToken(): Promise<string> {
    if (Date.now() - this.admin.at > 5_000)
      this.admin = { token: await this.passwordToken("admin", ADMIN_PASSWORD, "admin"), at: Date.now() };
    return this.admin.token;
  }

  private async project(name: string): Promise<string> {
    let id = this.projects.get(name);
    if (id === undefined) {
      const r = await this.call("POST", "/projects", { project: { name, domain_id: "default" } });
      id = (r.json.project as { id: string }).id;
      this.projects.set(name, id);
    }
    return id;
  }

  private async passwordToken(user: string, password: string, project: string): Promise<string> {
    const r = await fetch(`${this.url}/auth/tokens?nocatalog`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        auth: {
          identity: {
            methods: ["password"],
            password: { user: { name: user, domain: { id: "default" }, password } },
          },
          scope: { project: { name: project, domain: { id: "default" } } },
        },
      }),
    });
    const token = r.headers.get("x-subject-token");
    if (r.status !== 201 || token === null)
      throw new Error(`keystone login of ${user}: ${r.status} ${await r.text()}`);
    await r.arrayBuffer().catch(() => undefined);
    return token;
  }

  private async call(method: string, path: string, body?: unknown): Promise<Answer> {
    const r = await fetch(`${this.url}${path}`, {
      method,
      headers: {
        "X-Auth-Token": await this.adminToken(),
        ...(body !== undefined ? { "Content-Type": "application/json" } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await r.text();
    if (r.status >= 300) throw new Error(`keystone ${method} ${path}: ${r.status} ${text}`);
    return {
      status: r.status,
      headers: r.headers,
      json: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>),
    };
  }
}
