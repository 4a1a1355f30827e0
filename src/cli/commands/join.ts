/**
 * `lockbox join`: run on a new machine to join the cluster by TPM attestation
 * (DESIGN.md §5, src/attestation). The operator gives members' addresses and
 * what `lockbox peer enroll` printed: the cluster CA's fingerprint or a
 * one-time join token. The joiner authenticates the cluster by that
 * fingerprint before sending anything, proves its TPM (credential activation,
 * a quote over the policy's PCRs), and on admission (the cluster now holds it
 * as a joining member) writes into --dir:
 *
 *   ca.crt               the cluster CA
 *   peer.crt, peer.key   its peer certificate, for a key made here (0600)
 *   master-key.sealed    the CMK, sealed to this TPM under the policy's PCRs (src/sealing)
 *   config.json          the peer's config: its enrolled address, the cluster's ring parameters, the TPM
 *                        and sealed CMK, the members to dial first (`lockbox serve --dir` needs no more)
 *
 * and only then confirms to a member that it holds the CMK; the member becomes active. join.json (what
 * was joined) is written last, once the join is confirmed.
 *
 * Two-step admission, so a verifier killed mid-join leaves no member that never got its key: a joiner
 * whose member stops answering (a dead leader, a lost answer) starts again with the next --member (a
 * retried join replaces an admission the cluster already holds); a confirmation goes to any member. A
 * refusal prints the verifier's check and code (the same the member audited) and exits 1; the files of
 * a join the cluster refused to confirm are removed (its certificate is revoked).
 */
import { generateKeyPairSync } from "node:crypto";
import { access, mkdir, rm, writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { join } from "node:path";
import { defineCommand, type OptionDefinition } from "../cli-definition.js";
import { EXIT_FAILURE, EXIT_OK } from "../command.js";
import { emitRecord } from "../output.js";
import {
  type ParsedArgs,
  UsageError,
  boolFlag,
  intFlag,
  printJson,
  requiredFlag,
  stringFlag,
} from "../client-options.js";
import { isHostPort, describeHostPort } from "../../net/host-port.js";
import { Tpm } from "../../../tpm/index.js";
import { bankName } from "../../../tpm/index-verify.js";
import { writeCertificateFile, writePrivateKeyFile } from "../../pki/pem-files.js";
import { TPM_ADDRESS_RULE, openTpmTransport, parseTpmAddress } from "../../sealing/tpm-address.js";
import { sealMasterKey, writeSealedMasterKeyFile } from "../../sealing/sealed-master-key.js";
import {
  ClusterAuthenticationError,
  type JoinConnection,
  connectToCluster,
} from "../../attestation/join-client.js";
import type { PeerSetup } from "../../attestation/join-authority.js";
import { type JoinRefusal, describeJoinRefusal } from "../../attestation/join-refusal.js";
import { newPeerConfig, validatePeerConfig } from "../../config/peer-config.js";
import {
  JoinTokenError,
  type JoinToken,
  normalizeFingerprint,
  parseJoinToken,
} from "../../attestation/join-token.js";
import {
  JoinRefusedError,
  type Joined,
  attestToCluster,
  confirmJoin,
  selection,
} from "../../attestation/joiner.js";
import { isNodeId, NODE_ID_RULE } from "../../../cluster/node-id.js";

const OPTIONS: readonly OptionDefinition[] = [
  {
    flags: "--member <HOST:PORT>",
    description:
      "a member of the cluster to attest to (repeatable or comma-separated: the others are tried when one stops answering)",
    required: true,
    repeatable: true,
  },
  {
    flags: "--listen <HOST:PORT>",
    description:
      "where the peer is to listen, in its config.json (default: the address it was enrolled with)",
  },
  { flags: "--timeout-s <SECONDS>", description: "give up after this long (default 120)" },
  {
    flags: "--ca-fingerprint <HEX>",
    description: "SHA-256 of the cluster CA certificate (as `lockbox peer enroll` printed it)",
  },
  {
    flags: "--token <TOKEN>",
    description:
      "the one-time join token `lockbox peer enroll` printed (names the CA too) [$LOCKBOX_JOIN_TOKEN]",
  },
  { flags: "--peer-id <ID>", description: "the peer id this machine was enrolled as", required: true },
  {
    flags: "--dir <DIR>",
    description: "where to write the certificate, key and sealed master key (new or empty)",
    required: true,
  },
  {
    flags: "--tpm <SPEC>",
    description: `${TPM_ADDRESS_RULE} [$LOCKBOX_TPM, default device:/dev/tpmrm0]`,
  },
];

export const FILES = {
  ca: "ca.crt",
  certificate: "peer.crt",
  key: "peer.key",
  sealedCmk: "master-key.sealed",
  config: "config.json",
  summary: "join.json",
} as const;

/** Between two attempts at the next member: a leader election takes about this long. */
const RETRY_PAUSE_MS = 500;
const TIMEOUT_S_DEFAULT = 120;

export const command = defineCommand({
  name: "join",
  summary: "join this machine to a cluster by TPM attestation",
  description:
    "The peer must have been enrolled (`lockbox peer enroll`), which printed the CA fingerprint and,\n" +
    "optionally, a one-time join token; give one of them. Under --json a refusal is one JSON line too.",
  options: OPTIONS,
  output: true,
  run: runJoin,
});

async function runJoin(args: ParsedArgs): Promise<number> {
  const members = memberAddresses(args);
  const peerId = requiredFlag(args, "peer-id");
  if (!isNodeId(peerId)) throw new UsageError(`--peer-id must be ${NODE_ID_RULE}`, "--peer-id");
  const dir = requiredFlag(args, "dir");
  const tpmSpec = stringFlag(args, "tpm") ?? process.env.LOCKBOX_TPM ?? "device:/dev/tpmrm0";
  const tpmAddress = parseTpmAddress(tpmSpec);
  if (tpmAddress === undefined)
    throw new UsageError(`--tpm must be ${TPM_ADDRESS_RULE}, got '${tpmSpec}'`, "--tpm");
  const listen = stringFlag(args, "listen");
  if (listen !== undefined && !isHostPort(listen))
    throw new UsageError(`--listen must be ${describeHostPort()}, got '${listen}'`, "--listen");
  const timeoutS = intFlag(args, "timeout-s", 1, 3600) ?? TIMEOUT_S_DEFAULT;
  const deadline = Date.now() + timeoutS * 1000;
  const { caFingerprint, token } = clusterAuthentication(args);
  const json = boolFlag(args, "json");
  const pause = testJoinPause();

  // Nothing is overwritten: a directory that already holds a peer's files is refused before any contact.
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const f of Object.values(FILES)) {
    if (await exists(join(dir, f)))
      throw new UsageError(`${join(dir, f)} already exists; use a new --dir`, "--dir");
  }
  const refused = (refusal: JoinRefusal, what: string): number => {
    if (json) printJson({ joined: false, refusal });
    process.stderr.write(`lockbox join: ${what}: ${describeJoinRefusal(refusal)}\n`);
    return EXIT_FAILURE;
  };

  // A member that keeps answering the same way is said once, not every round.
  const said = new Set<string>();
  const say = (line: string): void => {
    if (said.has(line)) return;
    said.add(line);
    process.stderr.write(line + "\n");
  };

  const tls = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const tpm = new Tpm(await openTpmTransport(tpmAddress));
  try {
    // 1. Attest to a member; the next one when it stops answering or answers "retry".
    let joined: Joined | undefined;
    let attestedTo = "";
    for await (const member of rotation(members, deadline)) {
      const outcome = await attempt(member, caFingerprint, (conn) =>
        attestToCluster({
          tpm,
          peerId,
          channel: pause.wrap(conn),
          tlsPublicKeySpki: tls.publicKey.export({ type: "spki", format: "der" }),
          ...(token !== undefined ? { joinToken: token } : {}),
        }),
      );
      if (outcome.kind === "done") {
        joined = outcome.value;
        attestedTo = member;
        break;
      }
      if (outcome.kind === "refused") return refused(outcome.refusal, "the cluster refused this machine");
      say(`lockbox join: ${member}: ${outcome.why}; trying the next member`);
    }
    if (joined === undefined) {
      process.stderr.write(`lockbox join: no member admitted this machine within ${timeoutS} s\n`);
      return EXIT_FAILURE;
    }

    // 2. Seal the CMK and write the files: the peer can start from here on, once confirmed.
    const { cmk } = joined;
    const written: string[] = [];
    try {
      try {
        const sealed = await sealMasterKey(tpm, {
          cmk: cmk.key,
          epoch: cmk.epoch,
          clusterId: joined.clusterId,
          pcrs: selection(joined.pcrs),
        });
        written.push(join(dir, FILES.sealedCmk));
        await writeSealedMasterKeyFile(join(dir, FILES.sealedCmk), sealed);
      } finally {
        cmk.key.fill(0);
      }
      written.push(join(dir, FILES.ca));
      await writeCertificateFile(join(dir, FILES.ca), joined.caCertificatePem);
      written.push(join(dir, FILES.certificate));
      await writeCertificateFile(join(dir, FILES.certificate), joined.certificatePem);
      written.push(join(dir, FILES.key));
      await writePrivateKeyFile(
        join(dir, FILES.key),
        tls.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
      );
      if (joined.peerSetup !== undefined) {
        written.push(join(dir, FILES.config));
        await writeJoinedPeerConfig(join(dir, FILES.config), {
          peerId,
          clusterId: joined.clusterId,
          listen: listen ?? joined.peerSetup.address,
          setup: joined.peerSetup,
          tpm: tpmSpec,
        });
      }
    } catch (err) {
      await removeAll(written);
      throw err;
    }

    // 3. Confirm to any member: only now does the cluster count this peer as active.
    await pause.at("before-confirm");
    let confirmedBy: string | undefined;
    let lastWhy = "";
    for await (const member of rotation([attestedTo, ...members.filter((m) => m !== attestedTo)], deadline)) {
      const outcome = await attempt(member, caFingerprint, (conn) => confirmJoin(conn, joined.confirm));
      if (outcome.kind === "done") {
        confirmedBy = member;
        break;
      }
      if (outcome.kind === "refused") {
        // The admission is gone (undone, replaced) or the proof was refused: these files are dead.
        await removeAll(written);
        return refused(
          outcome.refusal,
          "the cluster admitted this machine but refused its confirmation (files removed; join again)",
        );
      }
      lastWhy = outcome.why;
      say(`lockbox join: ${member}: ${outcome.why}; confirming through the next member`);
    }
    if (confirmedBy === undefined) {
      // Unknown outcome: a confirmation may have committed unanswered. The files stay; the cluster
      // either counts this peer active (serve it) or undoes the admission after its timeout.
      process.stderr.write(
        `lockbox join: admitted, but no member answered the confirmation within ${timeoutS} s (${lastWhy}); ` +
          `\`lockbox peer list\` shows whether ${peerId} is active; if it is not, remove ${dir} and join again\n`,
      );
      return EXIT_FAILURE;
    }

    const summary = {
      joined: true,
      peerId,
      clusterId: joined.clusterId,
      member: attestedTo,
      confirmedBy,
      caFingerprint,
      cmkEpoch: cmk.epoch,
      sealedPcrs: joined.pcrs.map((p) => `${bankName(p.hashAlg)}:${p.pcr}`),
      files: Object.fromEntries(
        Object.entries(FILES)
          .filter(([k]) => k !== "config" || joined.peerSetup !== undefined)
          .map(([k, f]) => [k, join(dir, f)]),
      ),
    };
    await writeFile(join(dir, FILES.summary), JSON.stringify(summary, null, 2) + "\n", {
      mode: 0o644,
      flag: "wx",
    });
    emitRecord(
      summary,
      () =>
        [
          `joined cluster ${joined.clusterId} as ${peerId} (attested to ${attestedTo}, confirmed through ${confirmedBy})`,
          `  certificate   ${summary.files.certificate} (key ${summary.files.key})`,
          `  master key    epoch ${cmk.epoch}, sealed to this TPM (${summary.sealedPcrs.join(",")}) in ${summary.files.sealedCmk}`,
          joined.peerSetup !== undefined
            ? `  config        ${summary.files.config}: start it with \`lockbox serve --dir ${dir}\``
            : `  config        none (the member sent no ring parameters): write ${join(dir, FILES.config)} yourself`,
        ].join("\n") + "\n",
    );
    return EXIT_OK;
  } finally {
    await tpm.close();
  }
}

type Attempt<T> =
  { kind: "done"; value: T } | { kind: "refused"; refusal: JoinRefusal } | { kind: "retry"; why: string };

/**
 * One try at one member: authenticate the cluster there, then `run`. A recoverable refusal (a busy
 * member, a session its verifier lost, an admission that did not commit) and a member that does not
 * answer are "retry"; a cluster whose CA is not the expected one ends the join.
 */
async function attempt<T>(
  member: string,
  caFingerprint: string,
  run: (conn: JoinConnection) => Promise<T>,
): Promise<Attempt<T>> {
  let conn: JoinConnection;
  try {
    conn = await connectToCluster({ address: member, caFingerprint });
  } catch (err) {
    if (err instanceof ClusterAuthenticationError && err.code === "unreachable")
      return { kind: "retry", why: "unreachable" };
    throw err;
  }
  try {
    return { kind: "done", value: await run(conn) };
  } catch (err) {
    if (err instanceof JoinRefusedError) {
      return err.refusal.recoverable
        ? { kind: "retry", why: `${err.refusal.check}/${err.refusal.code}` }
        : { kind: "refused", refusal: err.refusal };
    }
    const code = (err as { code?: unknown }).code;
    if (typeof code === "number") return { kind: "retry", why: `gRPC status ${code}` };
    throw err;
  } finally {
    conn.close();
  }
}

/** The members in turn, again and again, until the deadline; a pause before each round after the first. */
async function* rotation(members: readonly string[], deadline: number): AsyncGenerator<string> {
  for (let round = 0; Date.now() < deadline; round++) {
    if (round > 0) await sleep(RETRY_PAUSE_MS);
    for (const m of members) {
      if (Date.now() >= deadline) return;
      yield m;
    }
  }
}

function memberAddresses(args: ParsedArgs): string[] {
  const given = args.values.member;
  const list = (Array.isArray(given) ? given : [given])
    .filter((v): v is string => typeof v === "string")
    .flatMap((v) => v.split(","))
    .map((v) => v.trim())
    .filter((v) => v !== "");
  if (list.length === 0) throw new UsageError("--member is required", "--member");
  for (const m of list) {
    if (!isHostPort(m))
      throw new UsageError(`--member must be ${describeHostPort()}, got '${m}'`, "--member");
  }
  return [...new Set(list)];
}

/** The config `lockbox serve --dir` starts the joined peer from: validated before it is written. */
async function writeJoinedPeerConfig(
  path: string,
  p: { peerId: string; clusterId: string; listen: string; setup: PeerSetup; tpm: string },
): Promise<void> {
  const base = newPeerConfig({ peerId: p.peerId, listen: p.listen, clusterId: p.clusterId });
  const config = validatePeerConfig(
    {
      ...base,
      partitionPower: p.setup.partitionPower,
      clusterSalt: p.setup.clusterSalt,
      masterKeySealing: { protector: "tpm", tpm: p.tpm, sealedFile: FILES.sealedCmk },
      replication: { ...base.replication, enabled: p.setup.replicationEnabled },
      ...(Object.keys(p.setup.seedPeers).length > 0 ? { seedPeers: { ...p.setup.seedPeers } } : {}),
    },
    "the member's peer setup",
  );
  await writeFile(path, JSON.stringify(config, null, 2) + "\n", { mode: 0o600, flag: "wx" });
}

async function removeAll(paths: readonly string[]): Promise<void> {
  for (const p of paths) await rm(p, { force: true });
}

/**
 * TESTS ONLY: $LOCKBOX_TEST_JOIN_PAUSE_AT (after-activate, after-attest or before-confirm) and
 * $LOCKBOX_TEST_JOIN_PAUSE_MS stop the join once, at that point, saying so on stderr, so a test can
 * SIGKILL a member exactly there.
 */
function testJoinPause(): {
  wrap: (c: JoinConnection) => JoinConnection;
  at: (point: string) => Promise<void>;
} {
  const point = process.env.LOCKBOX_TEST_JOIN_PAUSE_AT ?? "";
  const ms = Number(process.env.LOCKBOX_TEST_JOIN_PAUSE_MS ?? "0");
  let done = false;
  const at = async (where: string): Promise<void> => {
    if (done || where !== point || !(ms > 0)) return;
    done = true;
    process.stderr.write(`test hook: join paused ${where} for ${ms} ms\n`);
    await sleep(Math.min(ms, 600_000));
  };
  return {
    at,
    wrap: (c) =>
      point === ""
        ? c
        : {
            ...c,
            activate: async (a) => {
              const r = await c.activate(a);
              await at("after-activate");
              return r;
            },
            attest: async (q) => {
              const r = await c.attest(q);
              await at("after-attest");
              return r;
            },
          },
  };
}

function clusterAuthentication(args: ParsedArgs): { caFingerprint: string; token?: JoinToken } {
  const fingerprintText = stringFlag(args, "ca-fingerprint");
  const tokenText = stringFlag(args, "token") ?? process.env.LOCKBOX_JOIN_TOKEN;
  if (tokenText !== undefined) {
    let token: JoinToken;
    try {
      token = parseJoinToken(tokenText);
    } catch (err) {
      if (err instanceof JoinTokenError) throw new UsageError(`--token: ${err.message}`, "--token");
      throw err;
    }
    const given = fingerprintText === undefined ? undefined : normalizeFingerprint(fingerprintText);
    if (fingerprintText !== undefined && given === undefined) {
      throw new UsageError("--ca-fingerprint must be 64 hex digits (colons allowed)", "--ca-fingerprint");
    }
    if (given !== undefined && token.caFingerprint !== undefined && given !== token.caFingerprint) {
      throw new UsageError("--ca-fingerprint and the token's fingerprint differ", "--ca-fingerprint");
    }
    const fp = token.caFingerprint ?? given;
    if (fp === undefined) {
      throw new UsageError(
        "a bare join token names no cluster: give --ca-fingerprint too",
        "--ca-fingerprint",
      );
    }
    return { caFingerprint: fp, token };
  }
  if (fingerprintText === undefined) {
    throw new UsageError(
      "--ca-fingerprint or --token is required: a joiner never joins a cluster it cannot authenticate",
    );
  }
  const fp = normalizeFingerprint(fingerprintText);
  if (fp === undefined)
    throw new UsageError("--ca-fingerprint must be 64 hex digits (colons allowed)", "--ca-fingerprint");
  return { caFingerprint: fp };
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
