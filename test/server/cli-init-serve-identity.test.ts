import * as grpc from "@grpc/grpc-js";
import test from "ava";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { initCluster } from "../../src/cli/commands/init.js";
import { startPeer } from "../../src/peer/start-peer.js";
import { CLI_MAIN, runCli } from "../helpers/cli-process.js";
import { call, clientsFor } from "./peer-fixture.js";

function tempDir(t: import("ava").ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), "lockbox-cli-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test("init writes the cluster's files with private keys 0600, and refuses to run twice", async (t) => {
  const dir = join(tempDir(t), "cluster");
  const first = await runCli([
    "init",
    "--dir",
    dir,
    "--peer-id",
    "peer-7",
    "--listen",
    "127.0.0.1:7999",
    "--json",
  ]);
  t.is(first.code, 0, first.stderr);
  const out = JSON.parse(first.text) as { event: string; peerId: string; clusterId: string; listen: string };
  t.like(out, { event: "initialized", peerId: "peer-7", listen: "127.0.0.1:7999" });
  t.regex(first.stderr, /NOT FOR PRODUCTION/);
  t.deepEqual(readdirSync(dir).sort(), [
    "admin.crt",
    "admin.key",
    "ca.crt",
    "ca.key",
    "config.json",
    "data",
    "master-key.dev",
    "peer.crt",
    "peer.key",
  ]);
  for (const f of ["admin.key", "ca.key", "peer.key", "master-key.dev", "config.json"]) {
    t.is(statSync(join(dir, f)).mode & 0o777, 0o600, f);
  }
  const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
  t.like(config, {
    peerId: "peer-7",
    clusterId: out.clusterId,
    listen: "127.0.0.1:7999",
    partitionPower: 10,
  });

  const caBefore = readFileSync(join(dir, "ca.key"));
  const second = await runCli(["init", "--dir", dir]);
  t.is(second.code, 1);
  t.regex(second.stderr, /already holds a lockbox cluster/);
  t.deepEqual(readFileSync(join(dir, "ca.key")), caBefore, "the existing CA key is untouched");
});

test("init and identity issue refuse bad flags with a usage error naming the flag", async (t) => {
  const dir = join(tempDir(t), "c");
  const badListen = await runCli(["init", "--dir", dir, "--listen", "nope"]);
  t.is(badListen.code, 2);
  t.regex(badListen.stderr, /--listen/);
  await initCluster({ dir, peerId: "peer-1", listen: "127.0.0.1:0" });
  for (const [args, flag] of [
    [["--name", "bad name", "--role", "service", "--project", "p1"], "--name"],
    [["--name", "ok", "--role", "root", "--project", "p1"], "--role"],
    [["--name", "ok", "--role", "service", "--project", "p/1"], "--project"],
  ] as const) {
    const r = await runCli(["identity", "issue", "--dir", dir, ...args]);
    t.is(r.code, 2, r.stderr);
    t.true(r.stderr.includes(flag), `${args.join(" ")}: ${r.stderr.split("\n")[0]}`);
  }
  t.false(readdirSync(dir).includes("ok.crt"), "nothing was issued");
});

/** Starts `lockbox serve` and waits (bounded) for its ready line. */
async function serve(
  t: import("ava").ExecutionContext,
  dir: string,
): Promise<{ child: ChildProcess; ready: Record<string, string>; stderr: () => string }> {
  const child = spawn(
    process.execPath,
    [CLI_MAIN, "serve", "--dir", dir, "--listen", "127.0.0.1:0", "--json"],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  let stderr = "";
  child.stderr!.on("data", (b: Buffer) => (stderr += b.toString("utf8")));
  const lines = createInterface({ input: child.stdout! });
  const ready = await new Promise<Record<string, string>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line within 15 s; stderr: ${stderr}`)), 15_000);
    lines.once("line", (line) => {
      clearTimeout(timer);
      resolve(JSON.parse(line) as Record<string, string>);
    });
    child.once("exit", (code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
  });
  return { child, ready, stderr: () => stderr };
}

test("serve prints one ready line, serves an issued identity, and stops cleanly on SIGTERM", async (t) => {
  const dir = join(tempDir(t), "c");
  t.is((await runCli(["init", "--dir", dir, "--json"])).code, 0);
  const issued = await runCli([
    "identity",
    "issue",
    "--offline",
    "--dir",
    dir,
    "--name",
    "vol-host",
    "--role",
    "service",
    "--project",
    "p1",
    "--out",
    join(dir, "ids"),
    "--json",
  ]);
  t.is(issued.code, 0, issued.stderr);
  const files = JSON.parse(issued.text) as {
    certificate: string;
    key: string;
    role: string;
    projects: string[];
  };
  t.like(files, { role: "service", projects: ["p1"] });
  t.is(statSync(files.key).mode & 0o777, 0o600);

  const { child, ready, stderr } = await serve(t, dir);
  t.is(ready.event, "ready");
  t.regex(ready.address!, /^127\.0\.0\.1:\d+$/);
  t.is(ready.peerId, "peer-1");
  t.regex(stderr(), /DEVELOPMENT MASTER KEY PROTECTOR/);

  const port = Number(ready.address!.split(":")[1]);
  const fixture = {
    dir,
    peer: { address: ready.address!, port } as never,
    logs: [],
    ca: { certificatePem: readFileSync(join(dir, "ca.crt"), "utf8"), privateKeyPem: "" },
    admin: { certificatePem: "", privateKeyPem: "" },
  };
  const svc = clientsFor(t, fixture, {
    certificatePem: readFileSync(files.certificate, "utf8"),
    privateKeyPem: readFileSync(files.key, "utf8"),
  });
  const created = await call(svc.keys, "CreateKey", {
    project: "p1",
    scope: "vol-1",
    name: "root",
    algorithm: "KEY_ALGORITHM_AES",
    bit_length: 256,
  });
  t.true(created.ok);
  const admin = await call(svc.admin, "GetStatus", {});
  t.false(admin.ok);
  if (!admin.ok) t.is(admin.error.code, grpc.status.PERMISSION_DENIED);
  svc.close();

  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  child.kill("SIGTERM");
  t.is(await exit, 0, stderr());
  t.regex(stderr(), /SIGTERM: draining calls and closing the store/);
  // The store was closed (its lock released) and kept the key: a new peer opens it.
  const again = await startPeer({ dir, listen: "127.0.0.1:0", log: () => {} });
  t.teardown(() => again.close(500));
  t.pass();
});
