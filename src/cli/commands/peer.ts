/**
 * `lockbox peer enroll | list | remove | drain | add-unattested`: the cluster's members, in the
 * replicated control state (admin.proto). `enroll` prints the CA fingerprint and the one-time join
 * token the new peer's operator gives to `lockbox join`.
 */
import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { intFlag, requiredFlag, stringFlag, UsageError, type ParsedArgs } from "../client-options.js";
import type { OptionDefinition } from "../cli-definition.js";
import { clusterCommand } from "./cluster-call.js";

type PeerInfo = Record<string, unknown> & { peer_id: string; state: string; suffrage: string };

const row = (p: PeerInfo): string =>
  `${String(p.peer_id).padEnd(16)} ${String(p.state).padEnd(9)} ${String(p.suffrage).padEnd(8)} ${String(p.zone).padEnd(10)} ${String(p.address).padEnd(22)} ${String(p.policy || "-").padEnd(12)} ${String(p.reason)}`;
const HEADER = `${"PEER".padEnd(16)} ${"STATE".padEnd(9)} ${"SUFFRAGE".padEnd(8)} ${"ZONE".padEnd(10)} ${"ADDRESS".padEnd(22)} ${"POLICY".padEnd(12)} REASON`;

/** A PEM or DER file, as DER bytes. */
async function derFile(path: string, label: "CERTIFICATE" | "PUBLIC KEY"): Promise<Uint8Array> {
  const bytes = await readFile(path);
  const text = bytes.toString("latin1");
  if (!text.includes(`-----BEGIN ${label}-----`)) return bytes;
  if (label === "CERTIFICATE") return new X509Certificate(bytes).raw;
  const body = text.split(`-----BEGIN ${label}-----`)[1]!.split(`-----END ${label}-----`)[0]!;
  return Buffer.from(body.replace(/\s+/g, ""), "base64");
}

const PEER_OPTIONS: readonly OptionDefinition[] = [
  { flags: "--peer-id <ID>", description: "the peer's id", required: true },
  { flags: "--address <HOST:PORT>", description: "where it serves", required: true },
  { flags: "--zone <Z>", description: "its failure zone (voters spread over zones)", required: true },
  { flags: "--weight <N>", description: "ring weight", default: "1" },
];

export const command = clusterCommand("peer", "enroll, list, remove and drain the cluster's peers", {
  enroll: {
    summary: "record a new peer; prints the CA fingerprint and a one-time join token for its operator",
    description: "Give its TPM's EK as --ek-cert or --ek-public-key.",
    options: [
      ...PEER_OPTIONS,
      {
        flags: "--policy <NAME>",
        description: "the PCR policy its quotes must satisfy (lockbox policy add)",
        required: true,
      },
      { flags: "--ek-cert <FILE>", description: "its TPM's EK certificate (PEM or DER; `lockbox tpm ek`)" },
      {
        flags: "--ek-public-key <FILE>",
        description: "or its EK public key (PEM or DER SubjectPublicKeyInfo)",
      },
      {
        flags: "--token-ttl-s <N>",
        description: "join token lifetime in seconds (default 3600, at most 604800)",
      },
    ],
    async run(client, args) {
      const certPath = stringFlag(args, "ek-cert");
      const keyPath = stringFlag(args, "ek-public-key");
      if (certPath === undefined && keyPath === undefined) {
        throw new UsageError("give --ek-cert FILE or --ek-public-key FILE", "--ek-cert");
      }
      const res = await client.adminCall<{
        peer: PeerInfo;
        join_token: string;
        join_token_expires_at: { seconds: string };
        ca_fingerprint_sha256: string;
      }>("EnrollPeer", {
        ...peerRequest(args),
        policy: requiredFlag(args, "policy"),
        ek_certificate: certPath === undefined ? Buffer.alloc(0) : await derFile(certPath, "CERTIFICATE"),
        ek_public_key: keyPath === undefined ? Buffer.alloc(0) : await derFile(keyPath, "PUBLIC KEY"),
        token_ttl_seconds: intFlag(args, "token-ttl-s", 1, 604_800) ?? 0,
      });
      const expires = new Date(Number(res.join_token_expires_at.seconds) * 1000).toISOString();
      return {
        json: {
          peer: res.peer,
          joinToken: res.join_token,
          joinTokenExpiresAt: expires,
          caFingerprintSha256: res.ca_fingerprint_sha256,
        },
        text: [
          `enrolled peer ${res.peer.peer_id} (state ${res.peer.state})`,
          `  CA fingerprint (SHA-256)  ${res.ca_fingerprint_sha256}`,
          `  join token (shown once)   ${res.join_token}`,
          `  token expires             ${expires}`,
          `on the new machine: lockbox join --token <token> --ca-fingerprint <fingerprint> ...`,
        ],
      };
    },
  },
  list: {
    summary: "list every peer: state, voter or learner, zone, address, policy",
    options: [],
    async run(client) {
      const res = await client.adminCall<{ peers: PeerInfo[]; leader: string }>("ListPeers", {});
      return {
        json: res,
        text: [`leader: ${res.leader || "(none known)"}`, HEADER, ...res.peers.map(row)],
      };
    },
  },
  remove: {
    summary: "remove a peer for good: it leaves raft, its certificate is revoked everywhere",
    options: [
      { flags: "--peer-id <ID>", description: "the peer to remove", required: true },
      { flags: "--reason <TEXT>", description: "recorded with the removal" },
    ],
    async run(client, args) {
      const res = await client.adminCall<{ peer: PeerInfo }>("RemovePeer", {
        peer_id: requiredFlag(args, "peer-id"),
        reason: stringFlag(args, "reason") ?? "",
      });
      return { json: res, text: [`removed peer ${res.peer.peer_id}`, HEADER, row(res.peer)] };
    },
  },
  drain: {
    summary: "mark an active peer leaving: voting moves away from it",
    options: [{ flags: "--peer-id <ID>", description: "the peer to drain", required: true }],
    async run(client, args) {
      const res = await client.adminCall<{ peer: PeerInfo }>("DrainPeer", {
        peer_id: requiredFlag(args, "peer-id"),
      });
      return { json: res, text: [`peer ${res.peer.peer_id} is ${res.peer.state}`, HEADER, row(res.peer)] };
    },
  },
  "add-unattested": {
    summary:
      "TESTS ONLY, NOT ATTESTED: add an active peer with no TPM (needs allowUnattestedMembersForTests)",
    options: [
      ...PEER_OPTIONS,
      {
        flags: "--peer-cert <FILE>",
        description: "its peer certificate (PEM) from the cluster CA",
        required: true,
      },
    ],
    async run(client, args) {
      const res = await client.adminCall<{ peer: PeerInfo }>("AddPeerUnattested", {
        ...peerRequest(args),
        certificate_pem: await readFile(requiredFlag(args, "peer-cert"), "utf8"),
      });
      return {
        json: res,
        text: [`added peer ${res.peer.peer_id} WITHOUT ATTESTATION`, HEADER, row(res.peer)],
      };
    },
  },
});

function peerRequest(args: ParsedArgs): Record<string, unknown> {
  return {
    peer_id: requiredFlag(args, "peer-id"),
    address: requiredFlag(args, "address"),
    zone: requiredFlag(args, "zone"),
    weight: intFlag(args, "weight", 1, 1_000_000) ?? 1,
  };
}
