/**
 * The peer's TLS material: the cluster CA (client certificates must chain to
 * it), the peer's certificate and its private key, as PEM. The TLS server
 * that uses them is edge-listener.ts: it requests a client certificate
 * without letting the handshake reject a missing or untrusted one, so such a
 * client gets UNAUTHENTICATED per call (call-admission.ts) rather than a
 * failed connection, which a gRPC client would only report as UNAVAILABLE.
 */
export interface ServerTlsMaterial {
  readonly caCertificatePem: string;
  readonly certificatePem: string;
  readonly privateKeyPem: string;
}
