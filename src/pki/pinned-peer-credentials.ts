/**
 * Client credentials for a peer-to-peer gRPC channel: this peer's certificate for mutual TLS, the
 * cluster CA as the only trust root, and the server pinned to the one peer the channel is for. TLS
 * chains the server's certificate to the cluster CA; that alone would let any member answer for
 * another (a stale address, a wrong dial override), so the certificate must also prove `peerId`.
 */
import * as grpc from "@grpc/grpc-js";
import { X509Certificate } from "node:crypto";
import { checkServerIdentity } from "node:tls";
import { peerIdOf } from "./peer-certificate-verifier.js";

/** The PEM material of this peer's certificate, and the CA that issued every peer's. */
export interface PeerTlsMaterial {
  readonly caCertificatePem: string;
  readonly certificatePem: string;
  readonly privateKeyPem: string;
}

export function pinnedPeerCredentials(tls: PeerTlsMaterial, peerId: string): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(
    Buffer.from(tls.caCertificatePem),
    Buffer.from(tls.privateKeyPem),
    Buffer.from(tls.certificatePem),
    {
      checkServerIdentity: (host, cert) => {
        const hostError = checkServerIdentity(host, cert);
        if (hostError !== undefined) return hostError;
        // peerIdOf throws for a certificate that is not a peer's: returned, the error fails this
        // connection; thrown from inside TLS, it would be an uncaught exception that stops the process.
        try {
          const id = peerIdOf(new X509Certificate(cert.raw));
          return id === peerId ? undefined : new Error(`the server at ${host} is peer ${id}, not ${peerId}`);
        } catch (e) {
          return e instanceof Error ? e : new Error(String(e));
        }
      },
    },
  );
}
