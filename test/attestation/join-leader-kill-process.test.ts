/**
 * Issue 9's acceptance "Leader killed with SIGKILL during a join: the join either completes or fails
 * cleanly, with no half-added member", with real processes: `lockbox dev-cluster start` brings up 3
 * peers on 127.0.0.1, each with its own swtpm; a 4th machine (its own swtpm, provisioned by the same
 * simulated manufacturer CA) is enrolled and runs `lockbox join` as a separate process, and the leader
 * is SIGKILLed at a chosen point of the join. The points are made deterministic by test hooks that
 * pause there and say so ($LOCKBOX_TEST_JOIN_ADMIT_PAUSE_MS on the members: after an admission
 * committed, before it is answered; $LOCKBOX_TEST_JOIN_PAUSE_AT on the joiner).
 *
 * Throughout each join a watcher polls ListPeers (what `lockbox peer list` prints): the new peer is
 * never active unless its sealed CMK is already on its disk. Each test restarts the peer it killed.
 */
import test, { type ExecutionContext } from "ava";
import type { ChildProcess } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, promises as fs } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import { Tpm } from "../../tpm/client/tpm.js";
import { readEk } from "../../tpm/ek/read-ek.js";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { TpmlPcrSelection } from "../../tpm/spec/pcr.js";
import { localCaCertPaths, provisionSwtpm, startSwtpm } from "../../tpm/swtpm/index.js";
import { quotePolicyForValues } from "../../tpm/verify/quote-policy.js";
import { isRecorded, readRecords } from "../../src/cli/dev-processes.js";
import { LockboxClient } from "../../src/client/index.js";
import { loadPeerConfig } from "../../src/config/peer-config.js";
import { openTpmTransport, requireTpmAddress } from "../../src/sealing/tpm-address.js";
import { CLI_MAIN, runCliJson, withoutLockboxVars } from "../helpers/cli-process.js";
import { startDevCluster } from "../helpers/dev-cluster.js";
import { spawnOwned } from "../helpers/spawn-owned.js";
import { pollFor } from "../helpers/wait-for.js";

const INTERVAL_MS = 2_000;
const CONFIRM_TIMEOUT_MS = 10_000;
const ADMIT_PAUSE_MS = 4_000;
const START_TIMEOUT_MS = 170_000;
const JOIN_TIMEOUT_MS = 120_000;
const POLICY_PCRS = [0, 1, 2, 3, 7];
const MEMBER_ENV = {
  LOCKBOX_ATTESTATION_INTERVAL_MS: String(INTERVAL_MS),
  LOCKBOX_JOIN_CONFIRM_TIMEOUT_MS: String(CONFIRM_TIMEOUT_MS),
  LOCKBOX_TEST_JOIN_ADMIT_PAUSE_MS: String(ADMIT_PAUSE_MS),
};

interface PeerRow {
  peer_id: string;
  state: string;
  reason: string;
  suffrage: string;
  certificate_serial: string;
}

interface Cluster {
  dir: string;
  root: string;
  /** Every member's address, joined ones included. */
  addressOf: Record<string, string>;
  /** Every member's directory. */
  dirOf: Record<string, string>;
  /** Serve processes this file started (restarts, joined peers), by member id. */
  procs: Map<string, ChildProcess>;
  admin: LockboxClient;
  adminArgs: string[];
  manufacturerCaArgs: string[];
}

let cluster: Promise<Cluster> | undefined;
const cleanups: (() => Promise<void>)[] = [];

test.after.always(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

function devCluster(): Promise<Cluster> {
  cluster ??= (async () => {
    const { root, dir, started, admin, adminArgs } = await startDevCluster({
      prefix: "join-kill",
      timeoutMs: START_TIMEOUT_MS,
      env: MEMBER_ENV,
      onCleanup: (undo) => cleanups.push(undo),
    });
    const cas = localCaCertPaths(join(dir, "manufacturer-ca"));
    return {
      dir,
      root,
      addressOf: Object.fromEntries(started.peers.map((p) => [p.peer_id, p.address])),
      dirOf: Object.fromEntries(started.peers.map((p) => [p.peer_id, join(dir, p.peer_id)])),
      procs: new Map(),
      admin,
      adminArgs,
      manufacturerCaArgs: [cas.root, cas.intermediate].flatMap((f) => ["--manufacturer-ca", f]),
    };
  })();
  return cluster;
}

async function listPeers(c: Cluster): Promise<{ leader: string; peers: PeerRow[] }> {
  return c.admin.adminCall<{ leader: string; peers: PeerRow[] }>("ListPeers", {}, { deadlineMs: 3_000 });
}

async function leaderOf(c: Cluster): Promise<string> {
  const leader = await pollFor(async () => {
    const l = await listPeers(c);
    const voters = l.peers.filter((p) => p.suffrage === "voter" && p.state === "active").length;
    return l.leader !== "" && voters >= 3 ? l.leader : undefined;
  }, 30_000);
  if (leader === undefined) throw new Error("no leader with 3 active voters within 30 s");
  return leader;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

interface NewMachine {
  id: string;
  tpm: string;
  address: string;
  token: string;
  fingerprint: string;
}

/** A new machine with its own swtpm, its PCRs approved as a policy, enrolled as `id`. */
async function newMachine(t: ExecutionContext, c: Cluster, id: string): Promise<NewMachine> {
  const stateDir = join(c.root, "tpm", id);
  await provisionSwtpm({ stateDir, caDir: join(c.dir, "manufacturer-ca") });
  const swtpm = await startSwtpm({ stateDir });
  cleanups.push(() => swtpm.stop());
  const spec = `swtpm:127.0.0.1:${swtpm.port}`;
  const tpm = new Tpm(await openTpmTransport(requireTpmAddress(spec, "tpm")));
  const ekCertPath = join(c.root, `${id}-ek.crt`);
  const policyPath = join(c.root, `${id}-policy.json`);
  try {
    const ek = await readEk(tpm);
    await fs.writeFile(ekCertPath, new X509Certificate(ek.certificateDer).toString());
    const read = await tpm.pcrRead(TpmlPcrSelection.of(TPM_ALG_ID.SHA256, POLICY_PCRS));
    const values = read.values.map((v) => ({ hashAlg: v.hash, pcr: v.pcr, value: v.digest }));
    const policy = quotePolicyForValues(values, {
      hashAlg: "sha256",
      signatureScheme: "ecdsa",
      firmwareVersionMin: "00000000.00000000",
    });
    await fs.writeFile(policyPath, JSON.stringify(policy));
  } finally {
    await tpm.close();
  }
  // Setup, not what the tests assert: a policy and an enrolment are control-state writes that the
  // CLI does not repeat after a timeout, made right after a previous test restarted a killed leader
  // (its log still catching up) on a machine running other suites: 5 s was seen to run out in CI.
  const endpoint = [
    ...Object.values(c.addressOf).flatMap((a) => ["--endpoint", a]),
    ...c.adminArgs,
    "--deadline-ms",
    "30000",
  ];
  await runCliJson(["policy", "add", `pol-${id}`, "--file", policyPath, ...endpoint, "--json"]);
  const address = `127.0.0.1:${await freePort()}`;
  const enrolled = await runCliJson<{ joinToken: string; caFingerprintSha256: string }>([
    "peer",
    "enroll",
    "--peer-id",
    id,
    "--address",
    address,
    "--zone",
    "zone-1",
    "--policy",
    `pol-${id}`,
    "--ek-cert",
    ekCertPath,
    "--token-ttl-s",
    "600",
    ...endpoint,
    "--json",
  ]);
  t.log(`${id}: enrolled at ${address}, swtpm ${spec}`);
  return { id, tpm: spec, address, token: enrolled.joinToken, fingerprint: enrolled.caFingerprintSha256 };
}

interface RunningJoin {
  stderr(): string;
  readonly exited: Promise<number | null>;
  readonly child: ChildProcess;
}

/** `lockbox join` as its own process (killed with the test worker). */
function startJoin(
  m: NewMachine,
  dir: string,
  members: string[],
  env: Record<string, string> = {},
  extra: string[] = [],
): RunningJoin {
  const child = spawnOwned(
    process.execPath,
    [
      CLI_MAIN,
      "join",
      "--member",
      members.join(","),
      `--token=${m.token}`,
      "--ca-fingerprint",
      m.fingerprint,
      "--peer-id",
      m.id,
      "--dir",
      dir,
      "--tpm",
      m.tpm,
      ...extra,
    ],
    { env: { ...withoutLockboxVars(process.env), ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let err = "";
  child.stderr!.on("data", (b: Buffer) => (err += b.toString("utf8")));
  child.stdout!.on("data", () => {});
  const timer = setTimeout(() => child.kill("SIGKILL"), JOIN_TIMEOUT_MS);
  const exited = new Promise<number | null>((resolve) =>
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve(code);
    }),
  );
  cleanups.push(async () => void child.kill("SIGKILL"));
  return { stderr: () => err, exited, child };
}

async function waitText(
  what: string,
  text: () => Promise<string>,
  pattern: RegExp,
  ms: number,
): Promise<void> {
  const found = await pollFor(async () => (pattern.test(await text()) ? true : undefined), ms);
  if (found === undefined)
    throw new Error(`${what}: no ${String(pattern)} within ${ms} ms:\n${await text()}`);
}

/**
 * Watches ListPeers while a join runs: every time `id` shows active, its sealed CMK must already be on
 * its disk (`dir`). Returns the states seen and any violation.
 */
function watchMember(
  c: Cluster,
  id: string,
  dir: string,
): () => Promise<{ states: string[]; halfAdded: number }> {
  let stop = false;
  const states: string[] = [];
  let halfAdded = 0;
  const loop = (async () => {
    while (!stop) {
      const rows = await listPeers(c).catch(() => undefined);
      const row = rows?.peers.find((p) => p.peer_id === id);
      if (row !== undefined) {
        if (states.at(-1) !== row.state) states.push(row.state);
        if (row.state === "active" && !existsSync(join(dir, "master-key.sealed"))) halfAdded++;
      }
      await sleep(100);
    }
  })();
  cleanups.push(async () => {
    stop = true;
    await loop;
  });
  return async () => {
    stop = true;
    await loop;
    return { states, halfAdded };
  };
}

async function killPeer(c: Cluster, id: string): Promise<void> {
  const child = c.procs.get(id);
  if (child !== undefined && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
    return;
  }
  const record = (await readRecords(join(c.dir, "run"))).find((r) => r.name === id);
  if (record === undefined || !isRecorded(record)) throw new Error(`no running process recorded for ${id}`);
  process.kill(record.pid, "SIGKILL");
  await pollFor(async () => (isRecorded(record) ? undefined : true), 10_000);
}

/** `lockbox serve --dir DIR --json` plus `extra`, until it says ready; killed with the test worker. */
async function serve(
  dir: string,
  logPath: string,
  extra: string[] = [],
): Promise<{ child: ChildProcess; log: () => Promise<string> }> {
  const offset = existsSync(logPath) ? (await fs.stat(logPath)).size : 0;
  const out = await fs.open(logPath, "a");
  const child = spawnOwned(process.execPath, [CLI_MAIN, "serve", "--dir", dir, "--json", ...extra], {
    env: { ...withoutLockboxVars(process.env), ...MEMBER_ENV },
    stdio: ["ignore", out.fd, out.fd],
  });
  await out.close();
  cleanups.push(async () => void child.kill("SIGKILL"));
  const log = async (): Promise<string> => (await fs.readFile(logPath)).subarray(offset).toString("utf8");
  const ready = await pollFor(
    async () =>
      child.exitCode === null ? ((await log()).includes('"event":"ready"') ? true : undefined) : "exited",
    60_000,
  );
  if (ready !== true) throw new Error(`${dir} did not start:\n${await log()}`);
  return { child, log };
}

/** Brings a killed member back (its swtpm still runs; it unseals its CMK from it), serving joins too. */
async function restartMember(c: Cluster, id: string): Promise<void> {
  const { child } = await serve(c.dirOf[id]!, join(c.root, `${id}.restart.log`), c.manufacturerCaArgs);
  c.procs.set(id, child);
}

/** What member `id` logged, in every process of it. */
async function logOf(c: Cluster, id: string): Promise<string> {
  const files = [join(c.dir, `${id}.log`), join(c.root, `${id}.log`), join(c.root, `${id}.restart.log`)];
  const texts = await Promise.all(files.map((f) => fs.readFile(f, "utf8").catch(() => "")));
  return texts.join("\n");
}

async function stateOf(c: Cluster, id: string): Promise<PeerRow | undefined> {
  return (await listPeers(c)).peers.find((p) => p.peer_id === id);
}

test.serial(
  "leader SIGKILLed after it committed an admission, before answering it: the joiner joins again through another member (the admission is replaced), confirms, and the new peer serves from the config.json join wrote and restarts unsealing its CMK",
  async (t) => {
    t.timeout(START_TIMEOUT_MS + 180_000);
    const c = await devCluster();
    const leader = await leaderOf(c);
    const others = Object.keys(c.addressOf).filter((id) => id !== leader);
    const m = await newMachine(t, c, "peer-4");
    const dir = join(c.root, "peer-4");
    const watch = watchMember(c, m.id, dir);
    const joining = startJoin(m, dir, [c.addressOf[leader]!, ...others.map((id) => c.addressOf[id]!)]);

    await waitText(`${leader}'s log`, () => logOf(c, leader), /test hook: join of peer-4 admitted/, 60_000);
    const admitted = await stateOf(c, m.id);
    t.is(admitted?.state, "joining", "admitted, not active, before the joiner has its key");
    await killPeer(c, leader);

    const code = await joining.exited;
    const seen = await watch();
    t.is(code, 0, joining.stderr());
    t.regex(joining.stderr(), /trying the next member/, "the joiner moved on from the dead leader");
    t.is(
      seen.halfAdded,
      0,
      `peer-4 was listed active without a sealed CMK (states ${seen.states.join(" > ")})`,
    );
    const row = await stateOf(c, m.id);
    t.is(row?.state, "active");
    t.not(row?.certificate_serial, admitted?.certificate_serial, "the retried join replaced the admission");
    const summary = JSON.parse(await fs.readFile(join(dir, "join.json"), "utf8")) as { confirmedBy: string };
    t.not(summary.confirmedBy, c.addressOf[leader]);

    // The config join wrote is enough to start the peer: no further flags.
    const config = await loadPeerConfig(dir);
    t.is(config.listen, m.address);
    t.is(config.masterKeySealing?.tpm, m.tpm);
    const first = await serve(dir, join(c.root, "peer-4.log"));
    c.procs.set(m.id, first.child);
    c.addressOf[m.id] = m.address;
    c.dirOf[m.id] = dir;
    const sealState = async (): Promise<string> =>
      (await runCliJson<{ sealState: string }>(["status", "--endpoint", m.address, ...c.adminArgs, "--json"]))
        .sealState;
    t.is(await sealState(), "unsealed", "peer-4 serves");
    first.child.kill("SIGKILL");
    await pollFor(
      async () => (first.child.exitCode === null && first.child.signalCode === null ? undefined : true),
      10_000,
    );
    // Restarted, it unseals its CMK from its own swtpm without contacting anyone (and now serves joins).
    await restartMember(c, m.id);
    t.is(await sealState(), "unsealed", "peer-4 unsealed its CMK again after a SIGKILL");

    await restartMember(c, leader);
  },
);

test.serial(
  "leader SIGKILLed after the joiner got its admission, before it confirmed: the peer stays joining until the confirmation goes through another member, then it is active",
  async (t) => {
    t.timeout(START_TIMEOUT_MS + 120_000);
    const c = await devCluster();
    const leader = await leaderOf(c);
    const others = Object.keys(c.addressOf).filter((id) => id !== leader);
    const m = await newMachine(t, c, "peer-5");
    const dir = join(c.root, "peer-5");
    const watch = watchMember(c, m.id, dir);
    const joining = startJoin(m, dir, [c.addressOf[leader]!, ...others.map((id) => c.addressOf[id]!)], {
      LOCKBOX_TEST_JOIN_PAUSE_AT: "after-attest",
      LOCKBOX_TEST_JOIN_PAUSE_MS: "8000",
    });
    await waitText("the joiner", async () => joining.stderr(), /join paused after-attest/, 60_000);
    t.is((await stateOf(c, m.id))?.state, "joining");
    await killPeer(c, leader);

    const code = await joining.exited;
    const seen = await watch();
    t.is(code, 0, joining.stderr());
    t.is(
      seen.halfAdded,
      0,
      `peer-5 was listed active without a sealed CMK (states ${seen.states.join(" > ")})`,
    );
    t.is((await stateOf(c, m.id))?.state, "active");
    t.regex(joining.stderr(), /confirming through the next member/);
    const summary = JSON.parse(await fs.readFile(join(dir, "join.json"), "utf8")) as {
      member: string;
      confirmedBy: string;
    };
    t.is(summary.member, c.addressOf[leader], "admitted by the leader that was then killed");
    t.not(summary.confirmedBy, c.addressOf[leader]);

    await restartMember(c, leader);
  },
);

test.serial(
  "a joiner that never confirms (killed after its admission, with the leader) is undone by the next leader: back to enrolled, certificate gone; a retried join succeeds",
  async (t) => {
    t.timeout(START_TIMEOUT_MS + 120_000);
    const c = await devCluster();
    const leader = await leaderOf(c);
    const m = await newMachine(t, c, "peer-6");
    const dir = join(c.root, "peer-6");
    const watch = watchMember(c, m.id, dir);
    const joining = startJoin(m, dir, Object.values(c.addressOf), {
      LOCKBOX_TEST_JOIN_PAUSE_AT: "before-confirm",
      LOCKBOX_TEST_JOIN_PAUSE_MS: "60000",
    });
    await waitText("the joiner", async () => joining.stderr(), /join paused before-confirm/, 60_000);
    t.true(existsSync(join(dir, "master-key.sealed")), "sealed before confirming");
    const admitted = await stateOf(c, m.id);
    t.is(admitted?.state, "joining");
    joining.child.kill("SIGKILL");
    await joining.exited;
    await killPeer(c, leader);

    const undone = await pollFor(async () => {
      const row = await stateOf(c, m.id);
      return row?.state === "enrolled" ? row : undefined;
    }, CONFIRM_TIMEOUT_MS + 30_000);
    const seen = await watch();
    t.truthy(undone, `peer-6 was not undone (states ${seen.states.join(" > ")})`);
    t.regex(undone?.reason ?? "", /not confirmed/);
    t.is(undone?.certificate_serial, "", "the unconfirmed admission's certificate is no longer the member's");
    t.false(seen.states.includes("active"), `states ${seen.states.join(" > ")}`);

    // The operator joins again (a new directory: the old one holds a dead certificate).
    const retryDir = join(c.root, "peer-6-again");
    const again = startJoin(
      m,
      retryDir,
      Object.values(c.addressOf).filter((a) => a !== c.addressOf[leader]),
    );
    t.is(await again.exited, 0, again.stderr());
    t.is((await stateOf(c, m.id))?.state, "active");

    await restartMember(c, leader);
  },
);

test.serial(
  "a join whose only member is SIGKILLed mid-join fails cleanly: exit 1 with the reason, nothing written, the peer still enrolled; a retried join through the others succeeds",
  async (t) => {
    t.timeout(START_TIMEOUT_MS + 120_000);
    const c = await devCluster();
    const leader = await leaderOf(c);
    const m = await newMachine(t, c, "peer-7");
    const dir = join(c.root, "peer-7");
    const joining = startJoin(
      m,
      dir,
      [c.addressOf[leader]!],
      { LOCKBOX_TEST_JOIN_PAUSE_AT: "after-activate", LOCKBOX_TEST_JOIN_PAUSE_MS: "3000" },
      ["--timeout-s", "10"],
    );
    await waitText("the joiner", async () => joining.stderr(), /join paused after-activate/, 60_000);
    await killPeer(c, leader);
    t.is(await joining.exited, 1, joining.stderr());
    t.regex(joining.stderr(), /no member admitted this machine within 10 s/);
    t.deepEqual(existsSync(dir) ? await fs.readdir(dir) : [], [], "nothing written");
    const row = await pollFor(() => stateOf(c, m.id), 10_000);
    t.is(row?.state, "enrolled");

    const again = startJoin(m, join(c.root, "peer-7-again"), Object.values(c.addressOf));
    t.is(await again.exited, 0, again.stderr());
    t.is((await stateOf(c, m.id))?.state, "active");

    await restartMember(c, leader);
  },
);
