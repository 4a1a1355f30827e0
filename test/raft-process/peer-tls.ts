/**
 * Peer certificates for raft tests: one cluster CA per test process and a peer certificate per raft id,
 * issued by the real CA code (src/pki), so every test peer link runs the production mTLS checks.
 */
import * as grpc from "@grpc/grpc-js";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  createClusterCa,
  issuePeerCertificate,
  type CertifiedKey,
} from "../../src/pki/certificate-authority.js";
import type { PeerTlsMaterial } from "../../src/raft/grpc-peer-transport.js";
import { ClientCertificateRequestingCredentials } from "../../src/server/client-certificate-credentials.js";

let ca: Promise<CertifiedKey> | undefined;
const issued = new Map<string, Promise<PeerTlsMaterial>>();

export function testCa(): Promise<CertifiedKey> {
  ca ??= createClusterCa({ clusterId: "raft-test" });
  return ca;
}

/** The TLS material of raft peer `id` (issued once per test process). */
export function peerTls(id: string): Promise<PeerTlsMaterial> {
  let m = issued.get(id);
  if (m === undefined) {
    m = (async () => {
      const authority = await testCa();
      const cert = await issuePeerCertificate(authority, { peerId: id });
      return {
        caCertificatePem: authority.certificatePem,
        certificatePem: cert.certificatePem,
        privateKeyPem: cert.privateKeyPem,
      };
    })();
    issued.set(id, m);
  }
  return m;
}

/** Server credentials for peer `id`: TLS that requests (and lets the service verify) peer certificates. */
export async function peerServerCredentials(id: string): Promise<grpc.ServerCredentials> {
  return new ClientCertificateRequestingCredentials(await peerTls(id));
}

/** Client credentials of peer `id`, for tests that speak PeerService directly. */
export async function peerClientCredentials(id: string): Promise<grpc.ChannelCredentials> {
  const m = await peerTls(id);
  return grpc.credentials.createSsl(
    Buffer.from(m.caCertificatePem),
    Buffer.from(m.privateKeyPem),
    Buffer.from(m.certificatePem),
  );
}

/** Writes ca.crt, peer.crt and peer.key of `id` into `dir` (for a control-node process's --tls-dir). */
export async function writePeerTls(dir: string, id: string): Promise<void> {
  const m = await peerTls(id);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "ca.crt"), m.caCertificatePem);
  writeFileSync(join(dir, "peer.crt"), m.certificatePem);
  writeFileSync(join(dir, "peer.key"), m.privateKeyPem, { mode: 0o600 });
}
