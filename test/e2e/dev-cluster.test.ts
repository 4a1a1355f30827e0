/**
 * The README's start command (`scripts/dev start` runs `lockbox dev-cluster
 * start`): from an empty directory to a peer in the background against which
 * `lockbox key create` and `lockbox key get` work with only `--dir`, then
 * stopped again.
 */
import test from "ava";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { runCli, runCliJson } from "../helpers/cli-process.js";

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test("dev-cluster start brings up a peer that key create and key get work against; stop ends it", async (t) => {
  const dir = join(await fs.mkdtemp(join(tmpdir(), "lockbox-dev-")), "cluster");
  let pid: number | undefined;
  t.teardown(async () => {
    if (pid !== undefined && isAlive(pid)) process.kill(pid, "SIGKILL");
    await fs.rm(join(dir, ".."), { recursive: true, force: true });
  });

  const started = await runCliJson<{ event: string; pid: number; address: string }>([
    "dev-cluster",
    "start",
    "--dir",
    dir,
    "--listen",
    "127.0.0.1:0",
    "--json",
  ]);
  pid = started.pid;
  t.is(started.event, "started");
  t.true(isAlive(started.pid));
  t.is((await fs.readFile(join(dir, "peer.pid"), "utf8")).trim(), String(started.pid));

  // Only --dir: the address comes from the directory's dev-cluster state.
  const key = await runCliJson<{ id: string }>([
    "key",
    "create",
    "--dir",
    dir,
    "--project",
    "demo",
    "--scope",
    "volume-1",
    "--name",
    "root",
    "--json",
  ]);
  const got = await runCli(["key", "get", key.id, "--dir", dir]);
  t.is(got.code, 0, got.stderr);
  t.regex(got.text, /^[0-9a-f]{64}\n$/);

  const again = await runCliJson<{ event: string; pid: number }>([
    "dev-cluster",
    "start",
    "--dir",
    dir,
    "--json",
  ]);
  t.like(again, { event: "already-running", pid: started.pid });
  const status = await runCliJson<{ running: boolean; status: { keyCount: string } }>([
    "dev-cluster",
    "status",
    "--dir",
    dir,
    "--json",
  ]);
  t.true(status.running);
  t.is(status.status.keyCount, "1");

  const stopped = await runCliJson<{ event: string; forced: boolean }>([
    "dev-cluster",
    "stop",
    "--dir",
    dir,
    "--json",
  ]);
  t.like(stopped, { event: "stopped", forced: false });
  t.false(isAlive(started.pid));
  const after = await runCli(["dev-cluster", "status", "--dir", dir, "--json"]);
  t.is(after.code, 1);
  t.false((JSON.parse(after.text) as { running: boolean }).running);
  // The log the background peer wrote is there for the operator.
  t.regex(await fs.readFile(join(dir, "peer.log"), "utf8"), /"event":"ready"/);
});
