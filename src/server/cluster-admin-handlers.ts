/**
 * AdminService's cluster calls at the edge (admin.proto: peers, PCR policies, identities): wire fields
 * in, src/controlplane/cluster-admin.ts, wire fields out. Every call needs the admin role and is
 * audited like every other call (audited-unary.ts).
 */
import type * as grpc from "@grpc/grpc-js";
import type { ServiceDefinition } from "@grpc/proto-loader";
import { LockboxError } from "../errors.js";
import type { ClusterAdmin, PeerView } from "../controlplane/cluster-admin.js";
import type { IdentityRecord, PolicyRecord } from "../controlplane/control-records.js";
import type { PeerInfo } from "../gen/lockbox/v1/PeerInfo.js";
import type { PcrPolicy } from "../gen/lockbox/v1/PcrPolicy.js";
import type { IdentityInfo } from "../gen/lockbox/v1/IdentityInfo.js";
import { type EdgeContext, type Operation, auditedUnary } from "./audited-unary.js";
import { bytesFromWire, stringFromWire, timestampToWire, uint32FromWire } from "./wire-mapping.js";

type Wire = Record<string, unknown>;

export const CLUSTER_ADMIN_METHODS = [
  "EnrollPeer",
  "ListPeers",
  "RemovePeer",
  "DrainPeer",
  "AddPeerUnattested",
  "PutPolicy",
  "ListPolicies",
  "RemovePolicy",
  "IssueIdentity",
  "ListIdentities",
  "RevokeIdentity",
] as const;

/** `cluster` undefined: every cluster call is refused FAILED_PRECONDITION (a peer built without a control plane). */
export function clusterAdminHandlers(
  cluster: ClusterAdmin | undefined,
  ctx: EdgeContext,
  service: ServiceDefinition,
): grpc.UntypedServiceImplementation {
  const admin = (): ClusterAdmin => {
    if (cluster === undefined)
      throw new LockboxError("FAILED_PRECONDITION", "this peer has no control plane");
    return cluster;
  };
  const op = (name: string, run: (req: Wire) => Promise<object>): Operation<Wire, object> => ({
    name,
    adminOnly: true,
    requestFacts: () => ({}),
    async run(_caller, req) {
      return { response: await run(req) };
    },
  });
  const s = (req: Wire, f: string): string => stringFromWire(f, req[f]);
  const ops: Record<(typeof CLUSTER_ADMIN_METHODS)[number], Operation<Wire, object>> = {
    EnrollPeer: op("EnrollPeer", async (req) => {
      const r = await admin().enrollPeer({
        peerId: s(req, "peer_id"),
        address: s(req, "address"),
        zone: s(req, "zone"),
        weight: uint32FromWire("weight", req.weight),
        ekCertificate: bytesFromWire("ek_certificate", req.ek_certificate),
        ekPublicKey: bytesFromWire("ek_public_key", req.ek_public_key),
        policy: s(req, "policy"),
        tokenTtlSeconds: uint32FromWire("token_ttl_seconds", req.token_ttl_seconds),
      });
      return {
        peer: peerToWire(r.peer),
        join_token: r.joinToken,
        join_token_expires_at: timestampToWire(r.joinTokenExpiresAt),
        ca_fingerprint_sha256: r.caFingerprintSha256,
      };
    }),
    ListPeers: op("ListPeers", async () => {
      const r = await admin().listPeers();
      return { peers: r.peers.map(peerToWire), leader: r.leader };
    }),
    RemovePeer: op("RemovePeer", async (req) => ({
      peer: peerToWire(await admin().removePeer(s(req, "peer_id"), s(req, "reason"))),
    })),
    DrainPeer: op("DrainPeer", async (req) => ({
      peer: peerToWire(await admin().drainPeer(s(req, "peer_id"))),
    })),
    AddPeerUnattested: op("AddPeerUnattested", async (req) => ({
      peer: peerToWire(
        await admin().addPeerUnattested({
          peerId: s(req, "peer_id"),
          address: s(req, "address"),
          zone: s(req, "zone"),
          weight: uint32FromWire("weight", req.weight),
          certificatePem: s(req, "certificate_pem"),
        }),
      ),
    })),
    PutPolicy: op("PutPolicy", async (req) => ({
      policy: policyToWire(await admin().putPolicy(s(req, "name"), s(req, "policy_json"))),
    })),
    ListPolicies: op("ListPolicies", async () => ({
      policies: (await admin().listPolicies()).map(policyToWire),
    })),
    RemovePolicy: op("RemovePolicy", async (req) => {
      await admin().removePolicy(s(req, "name"));
      return {};
    }),
    IssueIdentity: op("IssueIdentity", async (req) => {
      const projects = req.projects;
      if (!Array.isArray(projects) || !projects.every((p) => typeof p === "string")) {
        throw new LockboxError("INVALID_ARGUMENT", "projects: must be strings", "projects");
      }
      const r = await admin().issueIdentity({
        name: s(req, "name"),
        role: s(req, "role"),
        projects: projects as string[],
        days: uint32FromWire("days", req.days),
      });
      return {
        certificate_pem: r.certificatePem,
        private_key_pem: r.privateKeyPem,
        serial: r.serial,
        not_after: timestampToWire(r.notAfter),
        ca_certificate_pem: r.caCertificatePem,
      };
    }),
    ListIdentities: op("ListIdentities", async () => ({
      identities: (await admin().listIdentities()).map(identityToWire),
    })),
    RevokeIdentity: op("RevokeIdentity", async (req) => ({
      revoked_serials: await admin().revokeIdentity(s(req, "name"), s(req, "reason")),
    })),
  };
  return Object.fromEntries(
    CLUSTER_ADMIN_METHODS.map((m) => [m, auditedUnary(ops[m], ctx, service[m]!)]),
  ) as grpc.UntypedServiceImplementation;
}

function peerToWire(p: PeerView): PeerInfo {
  return {
    peer_id: p.id,
    address: p.address,
    zone: p.zone,
    weight: p.weight,
    state: p.state,
    suffrage: p.suffrage,
    policy: p.policy,
    reason: p.reason,
    certificate_serial: p.certificateSerial,
    has_ek_certificate: p.ekCertificate !== "",
    has_ek_public_key: p.ekPublicKey !== "",
    enrolled_at: timestampToWire(new Date(p.enrolledAtMs)),
    state_changed_at: timestampToWire(new Date(p.stateChangedAtMs)),
  };
}

function policyToWire(p: PolicyRecord & { usedBy: string[] }): PcrPolicy {
  return {
    name: p.name,
    policy_json: JSON.stringify(p.policy),
    updated_at: timestampToWire(new Date(p.updatedAtMs)),
    used_by: p.usedBy,
  };
}

function identityToWire(i: IdentityRecord): IdentityInfo {
  return {
    name: i.name,
    role: i.role,
    projects: [...i.projects],
    serials: i.serials.map((s) => s.serial),
    revoked: i.revoked,
    created_at: timestampToWire(new Date(i.createdAtMs)),
  };
}
