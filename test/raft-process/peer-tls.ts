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

/**
 * Server TLS credentials that request a client certificate without letting the handshake reject a
 * missing or untrusted one, as the peer's edge listener does (src/server/edge-listener.ts): the peer
 * service then refuses such a call itself, with a status the test can read. grpc-js exports
 * ServerCredentials as an abstract class whose constructor takes the http2 server options and the
 * secure context options; this subclass relies on that (grpc-js 1.14).
 */
export class CertificateRequestingServerCredentials extends grpc.ServerCredentials {
  constructor(material: PeerTlsMaterial) {
    super(
      { requestCert: true, rejectUnauthorized: false, minVersion: "TLSv1.2" },
      {
        ca: Buffer.from(material.caCertificatePem),
        cert: Buffer.from(material.certificatePem),
        key: Buffer.from(material.privateKeyPem),
      },
    );
  }

  override _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

/** Server credentials for peer `id`: TLS that requests (and lets the service verify) peer certificates. */
export async function peerServerCredentials(id: string): Promise<grpc.ServerCredentials> {
  return new CertificateRequestingServerCredentials(await peerTls(id));
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
