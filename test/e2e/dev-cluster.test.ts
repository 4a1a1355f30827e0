/**
 * The README's start command (`scripts/dev start` runs `lockbox dev-cluster
 * start`), with real processes: from an empty directory to three peers on
 * 127.0.0.1, each with its own provisioned swtpm, peers 2 and 3 joined by TPM
 * attestation; status shows each one's process, raft role, suffrage and
 * attestation state; an identity issued through peer-1 works on peer-3 (and,
 * once revoked through peer-1, is refused there); stop leaves no process.
 */
import test from "ava";
import { promises as fs } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import { freeLoopbackPort, isRecorded, readRecords } from "../../src/cli/dev-processes.js";
import { runCli, runCliJson } from "../helpers/cli-process.js";

const START_TIMEOUT_MS = 170_000;

interface Started {
  event: string;
  leader: string;
  endpoints: string;
  peers: { peer_id: string; state: string; suffrage: string }[];
  processes: { name: string; pid: number }[];
  admin: { ca: string; cert: string; key: string };
}

interface Status {
  running: boolean;
  leader: string;
  peers: { peerId: string; running: boolean; raftRole: string; member: string; suffrage: string }[];
}

/** Every file under `dir`, relative names. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

test("dev-cluster start gives 3 attested members with a leader; an identity issued through peer-1 works on peer-3 and its revocation is refused there; stop leaves no process", async (t) => {
  t.timeout(START_TIMEOUT_MS + 60_000);
  const root = await fs.mkdtemp(join(tmpdir(), "lockbox-dev-"));
  const dir = join(root, "cluster");
  t.teardown(async () => {
    // Whatever happened, nothing this test started outlives it (only recorded pids, start time checked).
    for (const r of await readRecords(join(dir, "run"))) if (isRecorded(r)) process.kill(r.pid, "SIGKILL");
    await fs.rm(root, { recursive: true, force: true });
  });

  const started = await runCliJson<Started>(["dev-cluster", "start", "--dir", dir, "--json"], {
    timeoutMs: START_TIMEOUT_MS,
  });
  t.is(started.event, "started");
  t.deepEqual(started.peers.map((p) => p.peer_id).sort(), ["peer-1", "peer-2", "peer-3"]);
  for (const p of started.peers) t.is(p.state, "active", p.peer_id);
  t.true(["peer-1", "peer-2", "peer-3"].includes(started.leader));
  // 3 swtpms and 3 peers, each recorded and alive.
  t.deepEqual(started.processes.map((p) => p.name).sort(), [
    "peer-1",
    "peer-2",
    "peer-3",
    "swtpm-peer-1",
    "swtpm-peer-2",
    "swtpm-peer-3",
  ]);
  const records = await readRecords(join(dir, "run"));
  t.is(records.length, 6);
  for (const r of records) t.true(isRecorded(r), r.name);
  // No development master-key file on this path: every peer holds its CMK sealed to its own swtpm.
  const files = await filesUnder(dir);
  t.false(
    files.some((f) => f.endsWith("master-key.dev")),
    "a development master-key file was written",
  );
  for (const id of ["peer-1", "peer-2", "peer-3"])
    t.true(files.includes(join(dir, id, "master-key.sealed")), id);

  // `start` waits for 3 active members and a leader; promotions to voter are the autopilot's, a few
  // seconds later (stabilization, then one membership change at a time). Wait for them, bounded.
  let status = await runCliJson<Status>(["dev-cluster", "status", "--dir", dir, "--json"]);
  for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
    const settled =
      ["peer-1", "peer-2", "peer-3"].includes(status.leader) &&
      status.peers.filter((p) => p.suffrage === "voter").length >= 2;
    if (settled) break;
    await new Promise((r) => setTimeout(r, 1_000));
    status = await runCliJson<Status>(["dev-cluster", "status", "--dir", dir, "--json"]);
  }
  t.true(status.running);
  t.true(["peer-1", "peer-2", "peer-3"].includes(status.leader));
  t.is(status.peers.filter((p) => p.raftRole === "leader").length, 1);
  for (const p of status.peers) {
    t.like(p, { running: true, member: "active" }, p.peerId);
    t.true(["voter", "learner"].includes(p.suffrage), `${p.peerId}: ${p.suffrage}`);
  }
  t.true(status.peers.filter((p) => p.suffrage === "voter").length >= 2);

  const [peer1, , peer3] = started.endpoints.split(",") as [string, string, string];
  const admin = ["--ca", started.admin.ca, "--cert", started.admin.cert, "--key", started.admin.key];
  // The printed dev-admin identity works on peer-3 too, and reports its CMK sealed to a TPM.
  const peer3Status = await runCliJson<{ peerId: string; masterKeyProtector: string }>([
    "status",
    "--endpoint",
    peer3,
    ...admin,
    "--json",
  ]);
  t.like(peer3Status, { peerId: "peer-3", masterKeyProtector: "tpm" });

  // A service identity issued through peer-1 only ...
  const out = join(root, "identities");
  await fs.mkdir(out);
  await runCliJson([
    "identity",
    "issue",
    "--name",
    "svc-e2e",
    "--role",
    "service",
    "--project",
    "demo",
    "--out",
    out,
    "--endpoint",
    peer1,
    ...admin,
    "--json",
  ]);
  const svc = ["--endpoint", peer3, "--ca", started.admin.ca, "--cert", join(out, "svc-e2e.crt")];
  svc.push("--key", join(out, "svc-e2e.key"));
  // ... is recognised on peer-3, with its role and projects: its project works, another is refused.
  const created = await runCli(
    ["key", "create", ...svc, "--project", "demo", "--scope", "v1", "--name", "root", "--json"],
    { timeoutMs: 30_000 },
  );
  t.is(created.code, 0, created.stderr);
  const other = await runCli(
    ["key", "create", ...svc, "--project", "other", "--scope", "v1", "--name", "root", "--json"],
    { timeoutMs: 30_000 },
  );
  t.not(other.code, 0);

  // Replication is on: the key created through peer-3 reads with the same material through peer-1.
  const id = (JSON.parse(created.text) as { id: string }).id;
  const material = async (endpoint: string): Promise<string> => {
    const r = await runCli(["key", "get", id, ...svc, "--endpoint", endpoint, "--format", "hex"], {
      timeoutMs: 30_000,
    });
    t.is(r.code, 0, r.stderr);
    return r.text.trim();
  };
  const onPeer3 = await material(peer3);
  t.regex(onPeer3, /^[0-9a-f]{64}$/);
  t.is(await material(peer1), onPeer3, "peer-1 reads other material than peer-3 for the same key");

  // Revoked through peer-1, it is refused by peer-3 once the revocation commits (bounded wait).
  await runCliJson(["identity", "revoke", "--name", "svc-e2e", "--endpoint", peer1, ...admin, "--json"]);
  let refused = false;
  for (let i = 0; i < 40 && !refused; i++) {
    const r = await runCli(["key", "list", ...svc, "--project", "demo", "--json"], { timeoutMs: 30_000 });
    refused = r.code !== 0;
    if (!refused) await sleep(250);
  }
  t.true(refused, "peer-3 still accepts an identity revoked through peer-1");

  const stopped = await runCliJson<{ event: string; processes: { name: string; outcome: string }[] }>([
    "dev-cluster",
    "stop",
    "--dir",
    dir,
    "--json",
  ]);
  t.is(stopped.event, "stopped");
  t.is(stopped.processes.length, 6);
  // Peers go first (each shuts its TPM down), then the swtpms.
  t.deepEqual(
    stopped.processes.map((p) => p.name.startsWith("swtpm-")),
    [false, false, false, true, true, true],
  );
  for (const r of records) t.false(isRecorded(r), `${r.name} (pid ${r.pid}) still runs`);
  t.deepEqual(await readRecords(join(dir, "run")), []);
  const after = await runCli(["dev-cluster", "status", "--dir", dir, "--json"]);
  t.is(after.code, 1);
  t.false((JSON.parse(after.text) as Status).running);
});

test("a swtpm port taken by another process when the cluster first starts: that swtpm moves to a free pair, the layout records it, and the cluster starts", async (t) => {
  t.timeout(START_TIMEOUT_MS + 60_000);
  const root = await fs.mkdtemp(join(tmpdir(), "lockbox-dev-port-"));
  const dir = join(root, "cluster");
  // A listener holds the control port (port + 1) of the pair the layout gives peer-1's swtpm, as
  // another process, or a port still in TIME_WAIT, would when swtpm binds it: swtpm exits.
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
  const taken = (holder.address() as AddressInfo).port;
  t.teardown(async () => {
    holder.close();
    for (const r of await readRecords(join(dir, "run"))) if (isRecorded(r)) process.kill(r.pid, "SIGKILL");
    await fs.rm(root, { recursive: true, force: true });
  });
  const peers = [];
  for (let i = 1; i <= 3; i++) {
    peers.push({
      id: `peer-${i}`,
      zone: `zone-${i}`,
      address: `127.0.0.1:${await freeLoopbackPort()}`,
      swtpmPort: i === 1 ? taken - 1 : await freeLoopbackPort(),
    });
  }
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.writeFile(join(dir, "layout.json"), JSON.stringify({ peers }, null, 2) + "\n", { mode: 0o600 });

  const r = await runCli(["dev-cluster", "start", "--dir", dir, "--json"], { timeoutMs: START_TIMEOUT_MS });
  t.is(r.code, 0, r.stderr);
  t.regex(
    r.stderr,
    new RegExp(
      `swtpm of peer-1 could not use port ${taken - 1} \\(.*Address already in use.*\\); trying \\d+`,
    ),
  );
  const started = JSON.parse(r.text.trim()) as Started;
  for (const p of started.peers) t.is(p.state, "active", p.peer_id);
  const layout = JSON.parse(await fs.readFile(join(dir, "layout.json"), "utf8")) as { peers: typeof peers };
  t.not(layout.peers[0]!.swtpmPort, taken - 1, "the layout records the pair that worked");
  const stopped = await runCli(["dev-cluster", "stop", "--dir", dir, "--json"]);
  t.is(stopped.code, 0, stopped.stderr);
});
