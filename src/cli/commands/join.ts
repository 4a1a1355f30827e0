/**
 * `lockbox join`: run on a new machine to join the cluster by TPM attestation
 * (DESIGN.md §5, src/attestation). The operator gives a member's address and
 * what `lockbox peer enroll` printed: the cluster CA's fingerprint or a
 * one-time join token. The joiner authenticates the cluster by that
 * fingerprint before sending anything, proves its TPM (credential activation,
 * a quote over the policy's PCRs), and on admission writes into --dir:
 *
 *   ca.crt               the cluster CA
 *   peer.crt, peer.key   its peer certificate, for a key made here (0600)
 *   master-key.sealed    the CMK, sealed to this TPM under the policy's PCRs (src/sealing)
 *   join.json            what was joined: peer id, cluster id, member, CMK epoch, sealed PCRs
 *
 * A refusal prints the verifier's check and code (the same the member audited)
 * and exits 1; nothing is written. The peer's config.json (listen address,
 * the cluster's ring parameters) is not written here: it comes from the
 * control state (`lockbox peer enroll`, src/controlplane).
 */
import { generateKeyPairSync } from "node:crypto";
import { access, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { defineCommand, type OptionDefinition } from "../cli-definition.js";
import { EXIT_FAILURE, EXIT_OK } from "../command.js";
import { emitRecord } from "../output.js";
import {
  type ParsedArgs,
  UsageError,
  boolFlag,
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
import { connectToCluster } from "../../attestation/join-client.js";
import { describeJoinRefusal } from "../../attestation/join-refusal.js";
import {
  JoinTokenError,
  type JoinToken,
  normalizeFingerprint,
  parseJoinToken,
} from "../../attestation/join-token.js";
import { JoinRefusedError, joinCluster, selection } from "../../attestation/joiner.js";
import { isNodeId, NODE_ID_RULE } from "../../../cluster/node-id.js";

const OPTIONS: readonly OptionDefinition[] = [
  { flags: "--member <HOST:PORT>", description: "a member of the cluster to attest to", required: true },
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
  summary: "join.json",
} as const;

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
  const member = requiredFlag(args, "member");
  if (!isHostPort(member))
    throw new UsageError(`--member must be ${describeHostPort()}, got '${member}'`, "--member");
  const peerId = requiredFlag(args, "peer-id");
  if (!isNodeId(peerId)) throw new UsageError(`--peer-id must be ${NODE_ID_RULE}`, "--peer-id");
  const dir = requiredFlag(args, "dir");
  const tpmSpec = stringFlag(args, "tpm") ?? process.env.LOCKBOX_TPM ?? "device:/dev/tpmrm0";
  const tpmAddress = parseTpmAddress(tpmSpec);
  if (tpmAddress === undefined)
    throw new UsageError(`--tpm must be ${TPM_ADDRESS_RULE}, got '${tpmSpec}'`, "--tpm");
  const { caFingerprint, token } = clusterAuthentication(args);
  const json = boolFlag(args, "json");

  // Nothing is overwritten: a directory that already holds a peer's files is refused before any contact.
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const f of Object.values(FILES)) {
    if (await exists(join(dir, f)))
      throw new UsageError(`${join(dir, f)} already exists; use a new --dir`, "--dir");
  }

  const tls = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const tpm = new Tpm(await openTpmTransport(tpmAddress));
  try {
    const conn = await connectToCluster({ address: member, caFingerprint });
    let joined;
    try {
      joined = await joinCluster({
        tpm,
        peerId,
        channel: conn,
        tlsPublicKeySpki: tls.publicKey.export({ type: "spki", format: "der" }),
        ...(token !== undefined ? { joinToken: token } : {}),
      });
    } catch (err) {
      if (!(err instanceof JoinRefusedError)) throw err;
      if (json) printJson({ joined: false, refusal: err.refusal });
      process.stderr.write(
        `lockbox join: the cluster refused this machine: ${describeJoinRefusal(err.refusal)}\n`,
      );
      return EXIT_FAILURE;
    } finally {
      conn.close();
    }
    const { cmk } = joined;
    try {
      const sealed = await sealMasterKey(tpm, {
        cmk: cmk.key,
        epoch: cmk.epoch,
        clusterId: joined.clusterId,
        pcrs: selection(joined.pcrs),
      });
      await writeSealedMasterKeyFile(join(dir, FILES.sealedCmk), sealed);
    } finally {
      cmk.key.fill(0);
    }
    await writeCertificateFile(join(dir, FILES.ca), joined.caCertificatePem);
    await writeCertificateFile(join(dir, FILES.certificate), joined.certificatePem);
    await writePrivateKeyFile(
      join(dir, FILES.key),
      tls.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    );
    const summary = {
      joined: true,
      peerId,
      clusterId: joined.clusterId,
      member,
      caFingerprint,
      cmkEpoch: cmk.epoch,
      sealedPcrs: joined.pcrs.map((p) => `${bankName(p.hashAlg)}:${p.pcr}`),
      files: Object.fromEntries(Object.entries(FILES).map(([k, f]) => [k, join(dir, f)])),
    };
    await writeFile(join(dir, FILES.summary), JSON.stringify(summary, null, 2) + "\n", {
      mode: 0o644,
      flag: "wx",
    });
    emitRecord(
      summary,
      () =>
        [
          `joined cluster ${joined.clusterId} as ${peerId} (attested to ${member})`,
          `  certificate   ${summary.files.certificate} (key ${summary.files.key})`,
          `  master key    epoch ${cmk.epoch}, sealed to this TPM (${summary.sealedPcrs.join(",")}) in ${summary.files.sealedCmk}`,
        ].join("\n") + "\n",
    );
    return EXIT_OK;
  } finally {
    await tpm.close();
  }
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
