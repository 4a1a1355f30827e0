/**
 * `lockbox dev-cluster start|stop|status --dir DIR`: a local cluster of three
 * peers on 127.0.0.1 for trying lockbox out (the README's `scripts/dev start`),
 * built the way a real one is, with no development master-key file:
 *
 *   1. three swtpm simulators, each provisioned with its own EK and EK
 *      certificate from a local "manufacturer" CA (DIR/manufacturer-ca);
 *   2. `lockbox init --tpm` for peer-1: cluster CA, the CMK sealed to its swtpm,
 *      recovery shares written once to DIR/recovery-shares;
 *   3. peer-1 served (`lockbox serve --manufacturer-ca ...`, trusting that CA);
 *   4. for peer-2 and peer-3: a PCR policy of their swtpm's current values,
 *      `lockbox peer enroll` with their EK certificate, `lockbox join` with the
 *      one-time token (the CMK comes wrapped to the joiner and is sealed to its
 *      own swtpm), their config.json, and `lockbox serve`;
 *   5. waits (bounded) until the control state lists three active members and
 *      a leader, and issues the identity `dev-admin` (role admin) through
 *      peer-1, written to DIR/admin.crt and DIR/admin.key with DIR/ca.crt and
 *      DIR/dev-cluster.json, so `--dir DIR` (or $LOCKBOX_DIR) works on client
 *      commands.
 *
 * Every background process (swtpm, serve) has a pid file in DIR/run holding its
 * pid and kernel start time: `stop` signals exactly those, peers first so each
 * shuts its TPM down cleanly. A second `start` after `stop` restarts the same
 * cluster: the swtpms on their recorded ports, each peer unsealing its CMK from
 * its own swtpm.
 */
import { spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, promises as fs } from "node:fs";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

import { defineCommand, dirOption, type LeafDefinition, type OptionDefinition } from "../cli-definition.js";
import { EXIT_FAILURE, EXIT_OK } from "../command.js";
import { emitRecord, structuredOutput } from "../output.js";
import {
  dirFlag,
  requiredFlag,
  DEV_CLUSTER_STATE_FILE,
  clientFrom,
  UsageError,
  type ParsedArgs,
} from "../client-options.js";
import { describeHostPort, isHostPort } from "../../net/host-port.js";
import { isNodeId, NODE_ID_RULE } from "../../../cluster/node-id.js";
import {
  type ProcessRecord,
  freeLoopbackPort,
  isRecorded,
  readRecord,
  readRecords,
  recordProcess,
  spawnRecorded,
  stopRecorded,
} from "../dev-processes.js";
import { Tpm } from "../../../tpm/client/tpm.js";
import { readEk } from "../../../tpm/ek/read-ek.js";
import { TPM_ALG_ID } from "../../../tpm/spec/constants.js";
import { TpmlPcrSelection } from "../../../tpm/spec/pcr.js";
import {
  type RunningSwtpm,
  SwtpmError,
  localCaCertPaths,
  provisionSwtpm,
  startSwtpm,
} from "../../../tpm/swtpm/index.js";
import { quotePolicyForValues } from "../../../tpm/verify/quote-policy.js";
import { openTpmTransport, parseTpmAddress, requireTpmAddress } from "../../sealing/tpm-address.js";

/** dist/src/cli/main.js, seen from dist/src/cli/commands/. */
const CLI_MAIN = fileURLToPath(new URL("../main.js", import.meta.url));
const PEER_COUNT = 3;
const STEP_TIMEOUT_MS = 60_000;
const READY_TIMEOUT_MS = 30_000;
const MEMBERS_TIMEOUT_MS = 90_000;
const STOP_GRACE_MS = 10_000;
const POLL_MS = 200;
/** PCRs the dev policies cover (the firmware and boot-loader PCRs a real platform measures). */
const POLICY_PCRS = [0, 1, 2, 3, 7];
const ADMIN_NAME = "dev-admin";
const LAYOUT_FILE = "layout.json";

const dirDef = dirOption("where the cluster lives (swtpm states, peer directories, logs, pid files)");

/** Under --json (or --field) the result is data; progress lines then go to stderr. */
const leaf = (
  name: string,
  summary: string,
  body: (dir: string, json: boolean, args: ParsedArgs) => Promise<number>,
  options: readonly OptionDefinition[] = [],
): LeafDefinition => ({
  name,
  summary,
  options: [dirDef, ...options],
  output: true,
  run: (args) => body(resolve(dirFlag(args)), structuredOutput(), args),
});

export const command = defineCommand({
  name: "dev-cluster",
  summary: "start, stop or show a local 3-peer attested development cluster",
  description:
    "A local development cluster: 3 peers on 127.0.0.1, each with its own swtpm, joined by TPM\n" +
    "attestation. The swtpms and their manufacturer CA are simulated: NOT FOR PRODUCTION.",
  subcommands: [
    leaf("start", "create (first time) and start a local 3-peer cluster", (dir, json) => start(dir, json)),
    leaf("stop", "stop exactly the processes `start` started", (dir, json) => stop(dir, json)),
    leaf("status", "each peer: process, raft role, member state", (dir, json) => status(dir, json)),
    leaf(
      "peer-config",
      "write DIR/ID/config.json for a peer `lockbox join` put in DIR/ID (the README's 4th peer)",
      (dir, _json, args) => peerConfig(dir, args),
      [
        { flags: "--peer-id <ID>", description: "the joined peer's id", required: true },
        { flags: "--listen <HOST:PORT>", description: "where it will serve", required: true },
        { flags: "--tpm <SPEC>", description: "its swtpm: swtpm:HOST:PORT", required: true },
      ],
    ),
  ],
});

/** A result as data: one JSON line under --json, one field under --field. */
const printJson = (record: object): void => emitRecord(record, () => "");

/**
 * Chosen once, at the first start: ids, addresses and swtpm ports stay the same across restarts. A
 * swtpm port is 0 until that swtpm first started.
 */
interface Layout {
  peers: { id: string; zone: string; address: string; swtpmPort: number }[];
}

const runDir = (dir: string): string => join(dir, "run");
const peerDir = (dir: string, id: string): string => join(dir, id);
const tpmDir = (dir: string, id: string): string => join(dir, "tpm", id);
const caDir = (dir: string): string => join(dir, "manufacturer-ca");
const tpmSpec = (port: number): string => `swtpm:127.0.0.1:${port}`;

// ---- start ---------------------------------------------------------------

async function start(dir: string, json: boolean): Promise<number> {
  const began = Date.now();
  const say = (line: string): void => {
    const s = ((Date.now() - began) / 1000).toFixed(1).padStart(5);
    (json ? process.stderr : process.stdout).write(`[${s}s] ${line}\n`);
  };
  const running = (await readRecords(runDir(dir))).filter(isRecorded);
  if (running.length > 0) {
    throw new Error(
      `${running.map((r) => `${r.name} (pid ${r.pid})`).join(", ")} already running for ${dir}; ` +
        "`scripts/dev stop` first",
    );
  }
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const started: ProcessRecord[] = [];
  try {
    const layout = existsSync(join(dir, LAYOUT_FILE)) ? await readLayout(dir) : await newLayout(dir);
    // Each step of the first start is done once; a later start (after stop) only starts processes.
    const configured = (id: string): boolean => existsSync(join(peerDir(dir, id), "config.json"));
    const cas = localCaCertPaths(caDir(dir));
    const manufacturerCaArgs = [cas.root, cas.intermediate].flatMap((f) => ["--manufacturer-ca", f]);

    for (const p of layout.peers) {
      if (!existsSync(join(tpmDir(dir, p.id), "ekcerts"))) {
        say(`provisioning swtpm for ${p.id} (EK certificate from the local manufacturer CA)`);
        await provisionSwtpm({ stateDir: tpmDir(dir, p.id), caDir: caDir(dir) });
      }
      started.push(await startPeerSwtpm(dir, layout, p, !configured(p.id), say));
      say(`swtpm of ${p.id} on 127.0.0.1:${p.swtpmPort} (pid ${started.at(-1)!.pid})`);
    }

    const [first, ...others] = layout.peers as [Layout["peers"][0], ...Layout["peers"]];
    const firstDir = peerDir(dir, first.id);
    if (!configured(first.id)) {
      say(
        `lockbox init --tpm for ${first.id}: cluster CA, CMK sealed to its swtpm, 3 recovery shares (any 2)`,
      );
      await runStep([
        "init",
        "--dir",
        firstDir,
        "--peer-id",
        first.id,
        "--listen",
        first.address,
        "--tpm",
        tpmSpec(first.swtpmPort),
        "--shares",
        "3",
        "--threshold",
        "2",
        "--shares-dir",
        join(dir, "recovery-shares"),
        "--json",
      ]);
      await enableReplication(firstDir);
    }
    started.push(await startServe(dir, first.id, manufacturerCaArgs));
    say(`${first.id} serving on ${first.address} (pid ${started.at(-1)!.pid})`);
    const founder = ["--endpoint", first.address, "--dir", firstDir];

    for (const p of others) {
      if (!configured(p.id)) {
        const policy = `dev-${p.id}`;
        const { ekCertPath, policyPath } = await describeMachine(dir, p.id, p.swtpmPort, policy);
        say(`policy ${policy}: ${p.id}'s swtpm PCRs ${POLICY_PCRS.join(",")} as they are now`);
        await runStep(["policy", "add", policy, "--file", policyPath, ...founder, "--json"]);
        say(`lockbox peer enroll ${p.id} (${p.address}, ${p.zone}, its EK certificate)`);
        const enrolled = JSON.parse(
          await runStep([
            "peer",
            "enroll",
            "--peer-id",
            p.id,
            "--address",
            p.address,
            "--zone",
            p.zone,
            "--policy",
            policy,
            "--ek-cert",
            ekCertPath,
            "--token-ttl-s",
            "600",
            ...founder,
            "--json",
          ]),
        ) as { joinToken?: string; caFingerprintSha256?: string };
        if (typeof enrolled.joinToken !== "string" || typeof enrolled.caFingerprintSha256 !== "string")
          throw new Error("peer enroll printed no join token or CA fingerprint");
        say(`lockbox join ${p.id}: attests its swtpm to ${first.address} with the one-time token`);
        await runStep([
          "join",
          "--member",
          first.address,
          // One argument: a token may start with "-", which the option parser would take for an option.
          `--token=${enrolled.joinToken}`,
          "--ca-fingerprint",
          enrolled.caFingerprintSha256,
          "--peer-id",
          p.id,
          "--dir",
          peerDir(dir, p.id),
          "--tpm",
          tpmSpec(p.swtpmPort),
          "--json",
        ]);
        await writeJoinedConfig(dir, first, p);
      }
      started.push(await startServe(dir, p.id, manufacturerCaArgs));
      say(`${p.id} serving on ${p.address} (pid ${started.at(-1)!.pid})`);
    }

    say(`waiting for ${PEER_COUNT} active members and a leader`);
    const members = await waitForMembers(firstDir, layout);
    if (!existsSync(join(dir, "admin.crt"))) {
      say(`issuing identity ${ADMIN_NAME} (role admin) through ${first.id}`);
      await runStep([
        "identity",
        "issue",
        "--name",
        ADMIN_NAME,
        "--role",
        "admin",
        "--out",
        dir,
        ...founder,
        "--json",
      ]);
      await fs.rename(join(dir, `${ADMIN_NAME}.crt`), join(dir, "admin.crt"));
      await fs.rename(join(dir, `${ADMIN_NAME}.key`), join(dir, "admin.key"));
      await fs.copyFile(join(firstDir, "ca.crt"), join(dir, "ca.crt"));
    }
    await fs.writeFile(
      join(dir, DEV_CLUSTER_STATE_FILE),
      JSON.stringify({ address: first.address, peers: layout.peers, startedAt: new Date().toISOString() }) +
        "\n",
      { mode: 0o600 },
    );
    say(`ready in ${((Date.now() - began) / 1000).toFixed(1)} s`);
    report(dir, layout, members, started, json);
    return EXIT_OK;
  } catch (err) {
    // Leave nothing half-started behind: stop what this call started, newest first.
    for (const r of started.reverse()) await stopRecorded(runDir(dir), r, STOP_GRACE_MS).catch(() => {});
    throw err;
  }
}

async function newLayout(dir: string): Promise<Layout> {
  const peers: Layout["peers"] = [];
  for (let i = 1; i <= PEER_COUNT; i++) {
    peers.push({
      id: `peer-${i}`,
      zone: `zone-${i}`,
      address: `127.0.0.1:${await freeLoopbackPort()}`,
      swtpmPort: 0, // chosen when its swtpm first starts
    });
  }
  const layout = { peers };
  await writeLayout(dir, layout);
  return layout;
}

async function writeLayout(dir: string, layout: Layout): Promise<void> {
  await fs.writeFile(join(dir, LAYOUT_FILE), JSON.stringify(layout, null, 2) + "\n", { mode: 0o600 });
}

async function readLayout(dir: string): Promise<Layout> {
  const v = JSON.parse(await fs.readFile(join(dir, LAYOUT_FILE), "utf8")) as Layout;
  if (!Array.isArray(v.peers) || v.peers.length !== PEER_COUNT)
    throw new Error(`${join(dir, LAYOUT_FILE)} is damaged; remove ${dir} to start afresh`);
  return v;
}

/**
 * Starts a peer's swtpm, detached, through the swtpm launcher: ready once its data port answers a TPM
 * command from the swtpm it started (a foreign listener on the port does not pass), recorded in a pid
 * file so `stop` ends it. Before the peer is configured (its config names the port), the port may
 * move: the recorded pair, if any, is tried first, then free pairs; a pair can be taken by another
 * process, or hold TIME_WAIT connections after a test run, which swtpm (unlike Node) cannot bind. The
 * layout records the pair that worked. A configured peer's swtpm stays on its port.
 */
async function startPeerSwtpm(
  dir: string,
  layout: Layout,
  p: Layout["peers"][number],
  mayMove: boolean,
  say: (line: string) => void,
): Promise<ProcessRecord> {
  const logPath = join(dir, `swtpm-${p.id}.log`);
  const recorded = p.swtpmPort > 0 ? p.swtpmPort : undefined;
  let swtpm: RunningSwtpm;
  try {
    swtpm = await startSwtpm({
      stateDir: tpmDir(dir, p.id),
      detachedLogPath: logPath,
      startTimeoutMs: READY_TIMEOUT_MS,
      ...(!mayMove
        ? { portCandidates: [p.swtpmPort] }
        : recorded === undefined
          ? {}
          : { firstPort: recorded }),
      onPortRetry: (next, previous) =>
        say(`swtpm of ${p.id} could not use port ${previous.port} (${previous.reason}); trying ${next}`),
    });
  } catch (err) {
    if (!(err instanceof SwtpmError)) throw err;
    throw new Error(`swtpm of ${p.id} did not start: ${err.message}; see ${logPath}`, { cause: err });
  }
  try {
    const command = `swtpm socket --tpm2 on ${swtpm.host}:${swtpm.port}/${swtpm.ctrlPort}, state ${swtpm.stateDir}`;
    const record = await recordProcess(runDir(dir), `swtpm-${p.id}`, swtpm.pid, command);
    if (swtpm.port !== p.swtpmPort) {
      p.swtpmPort = swtpm.port;
      await writeLayout(dir, layout);
    }
    return record;
  } catch (err) {
    await swtpm.stop();
    throw err;
  }
}

async function startServe(dir: string, id: string, extraArgs: string[]): Promise<ProcessRecord> {
  const logPath = join(dir, `${id}.log`);
  const offset = existsSync(logPath) ? (await fs.stat(logPath)).size : 0;
  const record = await spawnRecorded(
    runDir(dir),
    id,
    process.execPath,
    [CLI_MAIN, "serve", "--dir", peerDir(dir, id), "--json", ...extraArgs],
    logPath,
  );
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const text = (await fs.readFile(logPath)).subarray(offset).toString("utf8");
    for (const line of text.split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        const v = JSON.parse(line) as { event?: string };
        if (v.event === "ready") return record;
      } catch {
        // a log line that only looks like JSON
      }
    }
    if (!isRecorded(record))
      throw new Error(`${id} exited before it was ready; see ${logPath}:\n${text.trim()}`);
    if (Date.now() > deadline)
      throw new Error(`${id} was not ready within ${READY_TIMEOUT_MS} ms; see ${logPath}`);
    await sleep(POLL_MS);
  }
}

/** Reads the joiner's EK certificate and current PCRs from its swtpm; writes them for enroll and policy add. */
async function describeMachine(
  dir: string,
  id: string,
  port: number,
  policy: string,
): Promise<{ ekCertPath: string; policyPath: string }> {
  const tpm = new Tpm(await openTpmTransport(requireTpmAddress(tpmSpec(port), "tpm")));
  try {
    const ek = await readEk(tpm);
    const read = await tpm.pcrRead(TpmlPcrSelection.of(TPM_ALG_ID.SHA256, POLICY_PCRS));
    const values = read.values.map((v) => ({ hashAlg: v.hash, pcr: v.pcr, value: v.digest }));
    const ekCertPath = join(tpmDir(dir, id), "ek.crt");
    await fs.writeFile(ekCertPath, new X509Certificate(ek.certificateDer).toString());
    const policyPath = join(dir, `${policy}.json`);
    const body = quotePolicyForValues(values, {
      hashAlg: "sha256",
      signatureScheme: "ecdsa",
      firmwareVersionMin: "00000000.00000000",
    });
    await fs.writeFile(policyPath, JSON.stringify(body, null, 2) + "\n");
    return { ekCertPath, policyPath };
  } finally {
    await tpm.close();
  }
}

/**
 * Keys on the ring (N = 3 once three peers are members): set in the founder's config before it first
 * serves, so its store never holds a key outside the ring; the joined peers' configs copy it.
 */
async function enableReplication(founderDir: string): Promise<void> {
  const path = join(founderDir, "config.json");
  const config = JSON.parse(await fs.readFile(path, "utf8")) as Record<string, unknown>;
  config.replication = { ...(config.replication as object | undefined), enabled: true };
  await fs.writeFile(path, JSON.stringify(config, null, 2) + "\n", { mode: 0o600 });
}

/**
 * The joined peer's config.json: `lockbox join` writes its certificate, key and sealed CMK but not the
 * config (the ring parameters come from the cluster). Here they are copied from the founder's, with
 * the founder as the seed peer to dial until the control state names the members.
 */
async function writeJoinedConfig(
  dir: string,
  founder: Layout["peers"][0],
  p: Layout["peers"][0],
): Promise<void> {
  const base = JSON.parse(await fs.readFile(join(peerDir(dir, founder.id), "config.json"), "utf8")) as Record<
    string,
    unknown
  >;
  const config = {
    ...base,
    peerId: p.id,
    listen: p.address,
    // No CA key here: a member signs with the CA key the control state holds, wrapped under the CMK.
    paths: { ...(base.paths as object), caKey: "no-ca-key-here" },
    masterKeySealing: { protector: "tpm", tpm: tpmSpec(p.swtpmPort), sealedFile: "master-key.sealed" },
    seedPeers: { [founder.id]: founder.address },
  };
  await fs.writeFile(join(peerDir(dir, p.id), "config.json"), JSON.stringify(config, null, 2) + "\n", {
    mode: 0o600,
  });
}

interface MemberRow {
  peer_id: string;
  address: string;
  state: string;
  suffrage: string;
  reason: string;
}

/** Bounded: until ListPeers (through any peer) shows every peer active and a leader is known. */
async function waitForMembers(
  firstDir: string,
  layout: Layout,
): Promise<{ leader: string; peers: MemberRow[] }> {
  const deadline = Date.now() + MEMBERS_TIMEOUT_MS;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    try {
      const res = await listPeers(firstDir, layout);
      const active = res.peers.filter((m) => m.state === "active").length;
      last = `${active}/${PEER_COUNT} active, leader ${res.leader || "(none)"}`;
      if (active === PEER_COUNT && res.leader !== "") return res;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(POLL_MS * 2);
  }
  throw new Error(
    `the cluster did not reach ${PEER_COUNT} active members within ${MEMBERS_TIMEOUT_MS} ms: ${last}`,
  );
}

async function listPeers(
  credentialsDir: string,
  layout: Layout,
): Promise<{ leader: string; peers: MemberRow[] }> {
  const client = await clientFrom({
    endpoints: layout.peers.map((p) => p.address),
    ca: join(credentialsDir, "ca.crt"),
    cert: join(credentialsDir, "admin.crt"),
    key: join(credentialsDir, "admin.key"),
  });
  try {
    return await client.adminCall<{ leader: string; peers: MemberRow[] }>(
      "ListPeers",
      {},
      { deadlineMs: 3000 },
    );
  } finally {
    client.close();
  }
}

function report(
  dir: string,
  layout: Layout,
  members: { leader: string; peers: MemberRow[] },
  started: ProcessRecord[],
  json: boolean,
): void {
  const endpoints = layout.peers.map((p) => p.address).join(",");
  if (json) {
    printJson({
      event: "started",
      dir,
      leader: members.leader,
      endpoints,
      peers: members.peers,
      processes: started.map((r) => ({ name: r.name, pid: r.pid })),
      admin: { ca: join(dir, "ca.crt"), cert: join(dir, "admin.crt"), key: join(dir, "admin.key") },
    });
    return;
  }
  const cli = "node dist/src/cli/main.js";
  const byId = new Map(members.peers.map((m) => [m.peer_id, m]));
  process.stdout.write(
    [
      "",
      `lockbox dev cluster: ${PEER_COUNT} peers, each with its own swtpm, joined by TPM attestation (leader ${members.leader})`,
      ...layout.peers.map((p) => {
        const m = byId.get(p.id);
        const pid = started.find((r) => r.name === p.id)?.pid;
        return `  ${p.id}  ${p.address}  ${m?.state ?? "?"} ${m?.suffrage ?? "?"}  pid ${pid}  log ${join(dir, `${p.id}.log`)}`;
      }),
      `  recovery shares (any 2 of 3) in ${join(dir, "recovery-shares")}; swtpm states in ${join(dir, "tpm")}`,
      "  The swtpms and their manufacturer CA are simulated: NOT FOR PRODUCTION.",
      "",
      `Use it (identity ${ADMIN_NAME}, role admin, issued through peer-1, valid on every peer):`,
      `  export LOCKBOX_ENDPOINT=${endpoints}`,
      `  export LOCKBOX_CA=${join(dir, "ca.crt")} LOCKBOX_CERT=${join(dir, "admin.crt")} LOCKBOX_KEY=${join(dir, "admin.key")}`,
      `  ${cli} peer list`,
      `  ${cli} status --endpoint ${layout.peers[2]!.address}`,
      `  ${cli} key create --project demo --scope volume-1 --name root --json`,
      `  ${cli} identity issue --name svc-1 --role service --project demo --out /tmp`,
      "  scripts/dev status",
      "  scripts/dev stop",
      "",
    ].join("\n"),
  );
}

/** Writes the config of a peer joined by hand into DIR/ID, as `start` does for peer-2 and peer-3. */
async function peerConfig(dir: string, args: ParsedArgs): Promise<number> {
  const id = requiredFlag(args, "peer-id");
  if (!isNodeId(id)) throw new UsageError(`--peer-id must be ${NODE_ID_RULE}`, "--peer-id");
  const listen = requiredFlag(args, "listen");
  if (!isHostPort(listen)) throw new UsageError(`--listen must be ${describeHostPort()}`, "--listen");
  const tpm = requiredFlag(args, "tpm");
  const address = parseTpmAddress(tpm);
  if (address?.kind !== "swtpm") throw new UsageError("--tpm must be swtpm:HOST:PORT", "--tpm");
  if (!existsSync(join(peerDir(dir, id), "master-key.sealed")))
    throw new UsageError(
      `${peerDir(dir, id)} holds no joined peer: run lockbox join --dir ${peerDir(dir, id)} first`,
    );
  if (existsSync(join(peerDir(dir, id), "config.json")))
    throw new UsageError(`${join(peerDir(dir, id), "config.json")} already exists`);
  const layout = await readLayout(dir);
  await writeJoinedConfig(dir, layout.peers[0]!, { id, zone: "", address: listen, swtpmPort: address.port });
  process.stdout.write(`wrote ${join(peerDir(dir, id), "config.json")}\n`);
  return EXIT_OK;
}

// ---- stop and status -----------------------------------------------------

async function stop(dir: string, json: boolean): Promise<number> {
  const records = await readRecords(runDir(dir));
  // Peers first (each shuts its TPM down cleanly on SIGTERM), then the swtpms.
  const ordered = [
    ...records.filter((r) => !r.name.startsWith("swtpm-")),
    ...records.filter((r) => r.name.startsWith("swtpm-")),
  ];
  const outcomes: { name: string; pid: number; outcome: string }[] = [];
  for (const r of ordered) {
    const outcome = await stopRecorded(runDir(dir), r, STOP_GRACE_MS);
    outcomes.push({ name: r.name, pid: r.pid, outcome });
    if (!json) process.stdout.write(`${r.name} (pid ${r.pid}): ${outcome}\n`);
  }
  await fs.rm(join(dir, DEV_CLUSTER_STATE_FILE), { force: true });
  if (json) printJson({ event: "stopped", dir, processes: outcomes });
  else if (outcomes.length === 0) process.stdout.write(`nothing of lockbox dev-cluster runs for ${dir}\n`);
  return EXIT_OK;
}

async function status(dir: string, json: boolean): Promise<number> {
  if (!existsSync(join(dir, LAYOUT_FILE))) {
    if (json) printJson({ running: false, dir });
    else process.stdout.write(`no lockbox dev cluster in ${dir}\n`);
    return EXIT_FAILURE;
  }
  const layout = await readLayout(dir);
  const credentials = existsSync(join(dir, "admin.crt")) ? dir : peerDir(dir, layout.peers[0]!.id);
  let members: { leader: string; peers: MemberRow[] } | undefined;
  let membersError: string | undefined;
  try {
    members = await listPeers(credentials, layout);
  } catch (err) {
    membersError = (err as Error).message;
  }
  const rows = [];
  for (const p of layout.peers) {
    const record = await readRecord(runDir(dir), p.id);
    const running = record !== undefined && isRecorded(record);
    let raft: { role?: string; leader?: string; voters?: string[]; learners?: string[] } | undefined;
    if (running) {
      const client = await clientFrom({
        endpoints: [p.address],
        ca: join(credentials, "ca.crt"),
        cert: join(credentials, "admin.crt"),
        key: join(credentials, "admin.key"),
      });
      try {
        raft = (await client.getStatus({ deadlineMs: 3000 })).raft;
      } catch {
        raft = undefined;
      } finally {
        client.close();
      }
    }
    const m = members?.peers.find((x) => x.peer_id === p.id);
    rows.push({
      peerId: p.id,
      address: p.address,
      running,
      pid: running ? record.pid : undefined,
      raftRole: raft?.role ?? "-",
      member: m?.state ?? "-",
      suffrage: m?.suffrage ?? "-",
      reason: m?.reason ?? "",
      voters: raft?.voters,
    });
  }
  const allActive = rows.every((r) => r.running && r.member === "active");
  if (json) {
    printJson({
      running: rows.some((r) => r.running),
      dir,
      leader: members?.leader ?? "",
      peers: rows,
      error: membersError,
    });
  } else {
    process.stdout.write(
      `leader: ${members?.leader || "(none known)"}${membersError ? `  (${membersError})` : ""}\n`,
    );
    process.stdout.write(
      `${"peer".padEnd(8)} ${"address".padEnd(17)} ${"process".padEnd(12)} ${"raft".padEnd(10)} ${"suffrage".padEnd(8)} attestation\n`,
    );
    for (const r of rows) {
      process.stdout.write(
        `${r.peerId.padEnd(8)} ${r.address.padEnd(17)} ${(r.running ? `pid ${r.pid}` : "not running").padEnd(12)} ${r.raftRole.padEnd(10)} ${r.suffrage.padEnd(8)} ${r.member}${r.reason ? ` (${r.reason})` : ""}\n`,
      );
    }
  }
  return allActive ? EXIT_OK : EXIT_FAILURE;
}

// ---- helpers -------------------------------------------------------------

/** Runs one CLI step in the foreground (bounded); returns its stdout, throws with its stderr on failure. */
function runStep(args: string[]): Promise<string> {
  return new Promise((resolveOut, reject) => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("LOCKBOX_")));
    const child = spawn(process.execPath, [CLI_MAIN, ...args], { stdio: ["ignore", "pipe", "pipe"], env });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out = (out + c.toString("utf8")).slice(-65536)));
    child.stderr.on("data", (c: Buffer) => (err = (err + c.toString("utf8")).slice(-65536)));
    const timer = setTimeout(() => child.kill("SIGKILL"), STEP_TIMEOUT_MS);
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolveOut(out);
      else
        reject(
          new Error(
            `lockbox ${args.slice(0, 2).join(" ")} ${signal === "SIGKILL" ? `timed out after ${STEP_TIMEOUT_MS} ms` : `exited ${code ?? signal}`}: ${(err || out).trim()}`,
          ),
        );
    });
  });
}
