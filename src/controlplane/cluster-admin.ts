/**
 * The operator's calls on the control state (admin.proto: peers, PCR policies, identities), transport
 * neutral: the gRPC handlers (src/server/admin-service-handlers.ts) map them to and from the wire.
 * Every change goes through the raft log (control-plane.ts propose, from any peer); every list reads
 * after a ReadIndex barrier.
 */
import { X509Certificate, createHash, createPublicKey } from "node:crypto";
import type { Barrier } from "../crypto/barrier.js";
import { LockboxError, invalidArgument } from "../errors.js";
import type { Clock } from "../time/clock.js";
import {
  CLIENT_VALIDITY_DAYS_DEFAULT,
  CLIENT_VALIDITY_DAYS_MAX,
  issueClientCertificate,
} from "../pki/certificate-authority.js";
import { PeerCertificateVerifier } from "../pki/peer-certificate-verifier.js";
import { isNodeId } from "../../cluster/node-id.js";
import { clusterCaFrom } from "./cluster-ca-key.js";
import { joinTokenSha256, newJoinToken } from "./join-token.js";
import { quotePolicy, type IdentityRecord, type MemberRecord, type PolicyRecord } from "./control-records.js";
import type { ControlPlane } from "./control-plane.js";
import { ControlShapeInvalid } from "./strict-fields.js";

export const JOIN_TOKEN_TTL_SECONDS_DEFAULT = 3600;
const CA_WAIT_MS_MAX = 5_000;
const CA_POLL_MS = 50;
export const JOIN_TOKEN_TTL_SECONDS_MAX = 7 * 24 * 3600;

export interface PeerView extends MemberRecord {
  suffrage: "voter" | "learner" | "none";
}

export interface ClusterAdminOptions {
  control: ControlPlane;
  barrier: Barrier;
  clock: Clock;
  /** The cluster CA certificate this peer trusts (its config's ca.crt). */
  caCertificatePem: string;
  /** Config flag allowUnattestedMembersForTests: lets addPeerUnattested through. Off by default. */
  allowUnattestedMembers: boolean;
}

export class ClusterAdmin {
  readonly #o: ClusterAdminOptions;

  constructor(options: ClusterAdminOptions) {
    this.#o = options;
  }

  async enrollPeer(p: {
    peerId: string;
    address: string;
    zone: string;
    weight: number;
    ekCertificate: Uint8Array;
    ekPublicKey: Uint8Array;
    policy: string;
    tokenTtlSeconds: number;
  }): Promise<{ peer: PeerView; joinToken: string; joinTokenExpiresAt: Date; caFingerprintSha256: string }> {
    if (p.ekCertificate.length === 0 && p.ekPublicKey.length === 0) {
      throw invalidArgument("ek_certificate", "an EK certificate or an EK public key is required");
    }
    if (p.ekCertificate.length > 0) {
      try {
        new X509Certificate(p.ekCertificate);
      } catch {
        throw invalidArgument("ek_certificate", "is not a DER X.509 certificate");
      }
    }
    if (p.ekPublicKey.length > 0) {
      try {
        createPublicKey({ key: Buffer.from(p.ekPublicKey), format: "der", type: "spki" });
      } catch {
        throw invalidArgument("ek_public_key", "is not a DER SubjectPublicKeyInfo");
      }
    }
    if (p.policy === "") throw invalidArgument("policy", "a PCR policy name is required");
    const ttl = p.tokenTtlSeconds === 0 ? JOIN_TOKEN_TTL_SECONDS_DEFAULT : p.tokenTtlSeconds;
    if (ttl > JOIN_TOKEN_TTL_SECONDS_MAX) {
      throw invalidArgument("token_ttl_seconds", `at most ${JOIN_TOKEN_TTL_SECONDS_MAX}`);
    }
    const now = this.#o.clock.now().getTime();
    const joinToken = newJoinToken();
    const expiresAtMs = now + ttl * 1000;
    await this.#propose(
      {
        type: "member.enroll",
        id: p.peerId,
        address: p.address,
        zone: p.zone,
        weight: p.weight === 0 ? 1 : p.weight,
        policy: p.policy,
        ekPublicKey: Buffer.from(p.ekPublicKey).toString("base64"),
        ekCertificate: Buffer.from(p.ekCertificate).toString("base64"),
        joinTokenSha256: joinTokenSha256(joinToken),
        joinTokenExpiresAtMs: expiresAtMs,
        atMs: now,
      },
      { peer_id: "id", address: "address", zone: "zone", policy: "policy" },
    );
    return {
      peer: await this.#peer(p.peerId),
      joinToken,
      joinTokenExpiresAt: new Date(expiresAtMs),
      caFingerprintSha256: caFingerprintSha256(this.#o.caCertificatePem),
    };
  }

  async listPeers(): Promise<{ peers: PeerView[]; leader: string }> {
    const state = await this.#o.control.readCurrent();
    const status = this.#o.control.driver.status();
    return { peers: state.members().map((m) => this.#view(m)), leader: status.leader ?? "" };
  }

  async removePeer(peerId: string, reason: string): Promise<PeerView> {
    const m = await this.#existing(peerId);
    if (m.state === "removed") return this.#view(m);
    await this.#transition(m, "removed", reason === "" ? "removed by an operator" : reason);
    return this.#peer(peerId);
  }

  async drainPeer(peerId: string): Promise<PeerView> {
    const m = await this.#existing(peerId);
    if (m.state === "leaving") return this.#view(m);
    if (m.state !== "active") {
      throw new LockboxError(
        "FAILED_PRECONDITION",
        `peer ${peerId} is ${m.state}; only an active peer drains`,
      );
    }
    await this.#transition(m, "leaving", "drained by an operator");
    return this.#peer(peerId);
  }

  /** NOT ATTESTED, for tests: see admin.proto AddPeerUnattested. */
  async addPeerUnattested(p: {
    peerId: string;
    address: string;
    zone: string;
    weight: number;
    certificatePem: string;
  }): Promise<PeerView> {
    if (!this.#o.allowUnattestedMembers) {
      throw new LockboxError(
        "FAILED_PRECONDITION",
        "adding a peer without attestation is for tests only; this peer's config does not allow it (allowUnattestedMembersForTests)",
      );
    }
    if (!isNodeId(p.peerId)) throw invalidArgument("peer_id", "is not a peer id");
    let serial: string;
    try {
      const identity = new PeerCertificateVerifier(this.#o.caCertificatePem).verify(
        new X509Certificate(p.certificatePem).raw,
        this.#o.clock.now(),
      );
      if (identity.peerId !== p.peerId)
        throw invalidArgument("certificate_pem", `names peer ${identity.peerId}, not ${p.peerId}`);
      serial = identity.serialNumber;
    } catch (e) {
      if (e instanceof LockboxError && e.code === "INVALID_ARGUMENT") throw e;
      throw invalidArgument(
        "certificate_pem",
        `is not a peer certificate of this cluster: ${(e as Error).message}`,
      );
    }
    await this.#propose(
      {
        type: "member.add-unattested",
        id: p.peerId,
        address: p.address,
        zone: p.zone,
        weight: p.weight === 0 ? 1 : p.weight,
        certificateSerial: serial,
        atMs: this.#o.clock.now().getTime(),
      },
      { peer_id: "id", address: "address", zone: "zone" },
    );
    return this.#peer(p.peerId);
  }

  async putPolicy(name: string, policyJson: string): Promise<PolicyRecord & { usedBy: string[] }> {
    let value: unknown;
    try {
      value = JSON.parse(policyJson);
    } catch {
      throw invalidArgument("policy_json", "is not JSON");
    }
    await this.#propose(
      {
        type: "policy.put",
        name,
        policy: quotePolicy(value, "policy_json"),
        atMs: this.#o.clock.now().getTime(),
      },
      { name: "name", policy_json: "policy" },
    );
    const state = await this.#o.control.readCurrent();
    return withUsers(state.policy(name)!, state.members());
  }

  async listPolicies(): Promise<(PolicyRecord & { usedBy: string[] })[]> {
    const state = await this.#o.control.readCurrent();
    return state.policies().map((p) => withUsers(p, state.members()));
  }

  async removePolicy(name: string): Promise<void> {
    await this.#propose({ type: "policy.remove", name }, { name: "name" });
  }

  async issueIdentity(p: { name: string; role: string; projects: string[]; days: number }): Promise<{
    certificatePem: string;
    privateKeyPem: string;
    serial: string;
    notAfter: Date;
    caCertificatePem: string;
  }> {
    if (p.role !== "admin" && p.role !== "service") throw invalidArgument("role", "must be service or admin");
    if (p.role === "service" && p.projects.length === 0) {
      throw invalidArgument("projects", "a service identity needs at least one project");
    }
    const days = p.days === 0 ? CLIENT_VALIDITY_DAYS_DEFAULT : p.days;
    if (days > CLIENT_VALIDITY_DAYS_MAX) throw invalidArgument("days", `at most ${CLIENT_VALIDITY_DAYS_MAX}`);
    const state = await this.#o.control.readCurrent();
    // A cluster founded a moment ago gets its CA record from the leader's first duty round: wait for it.
    const deadline = Date.now() + CA_WAIT_MS_MAX;
    while (state.clusterCa() === null && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, CA_POLL_MS));
    }
    if (state.identity(p.name)?.revoked === true) {
      throw new LockboxError("FAILED_PRECONDITION", `identity ${p.name} is revoked; choose another name`);
    }
    const ca = clusterCaFrom(state, this.#o.barrier);
    const now = this.#o.clock.now();
    const issued = await issueClientCertificate(ca, {
      identity: p.name,
      role: p.role,
      projects: [...new Set(p.projects)],
      days,
      now,
    });
    const cert = new X509Certificate(issued.certificatePem);
    const serial = cert.serialNumber.toUpperCase();
    const notAfter = new Date(cert.validTo);
    await this.#propose(
      {
        type: "identity.issue",
        name: p.name,
        role: p.role,
        projects: [...new Set(p.projects)],
        issued: { serial, notAfterMs: notAfter.getTime() },
        atMs: now.getTime(),
      },
      { name: "name", projects: "projects" },
    );
    return { ...issued, serial, notAfter, caCertificatePem: ca.certificatePem };
  }

  async listIdentities(): Promise<IdentityRecord[]> {
    return (await this.#o.control.readCurrent()).identities();
  }

  async revokeIdentity(name: string, reason: string): Promise<string[]> {
    const { result } = await this.#propose(
      {
        type: "identity.revoke",
        name,
        reason: reason === "" ? "revoked by an operator" : reason,
        atMs: this.#o.clock.now().getTime(),
      },
      { name: "name", reason: "reason" },
    );
    return ((result.value as { revokedSerials?: string[] } | undefined)?.revokedSerials ?? []).slice();
  }

  // ---- helpers ------------------------------------------------------------------------------------

  async #propose(
    command: Parameters<ControlPlane["proposeOrThrow"]>[0],
    wireFields: Record<string, string>,
  ): ReturnType<ControlPlane["proposeOrThrow"]> {
    try {
      return await this.#o.control.proposeOrThrow(command);
    } catch (e) {
      // A field the codec refuses is the caller's: name it by its wire name.
      if (e instanceof ControlShapeInvalid) {
        const key = e.field.split(".")[1] ?? "";
        const wire = Object.entries(wireFields).find(([, v]) => v === key)?.[0] ?? key;
        throw invalidArgument(wire, e.message.slice(e.field.length + 2));
      }
      throw e;
    }
  }

  async #existing(peerId: string): Promise<MemberRecord> {
    const m = (await this.#o.control.readCurrent()).member(peerId);
    if (m === undefined) throw new LockboxError("NOT_FOUND", `no peer ${peerId}`);
    return m;
  }

  async #transition(m: MemberRecord, to: MemberRecord["state"], reason: string): Promise<void> {
    await this.#o.control.proposeOrThrow({
      type: "member.transition",
      id: m.id,
      from: m.state,
      to,
      reason,
      certificateSerial: "",
      atMs: this.#o.clock.now().getTime(),
    });
  }

  async #peer(peerId: string): Promise<PeerView> {
    return this.#view(await this.#existing(peerId));
  }

  #view(m: MemberRecord): PeerView {
    const conf = this.#o.control.driver.status().confState;
    const suffrage = conf.voters.includes(m.id) ? "voter" : conf.learners.includes(m.id) ? "learner" : "none";
    return { ...m, suffrage };
  }
}

export function caFingerprintSha256(caCertificatePem: string): string {
  return createHash("sha256").update(new X509Certificate(caCertificatePem).raw).digest("hex");
}

function withUsers(p: PolicyRecord, members: readonly MemberRecord[]): PolicyRecord & { usedBy: string[] } {
  return {
    ...p,
    usedBy: members.filter((m) => m.state !== "removed" && m.policy === p.name).map((m) => m.id),
  };
}
