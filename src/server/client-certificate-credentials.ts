/**
 * Server TLS credentials that REQUEST a client certificate without letting
 * the TLS handshake reject a missing or untrusted one. grpc-js's own
 * `createSsl(..., checkClientCertificate=true)` fails such connections at the
 * handshake, which a client sees as UNAVAILABLE; lockbox instead answers each
 * call with UNAUTHENTICATED, after src/server/authenticate.ts has verified
 * the certificate itself. Node still checks the chain against `ca` and sets
 * `socket.authorized`; grpc-js only exposes a certificate from authorized
 * sockets (getAuthContext), and authenticate.ts verifies it again.
 *
 * grpc-js exports ServerCredentials as an abstract class whose constructor
 * takes the http2 server options and the secure context options; this
 * subclass relies on that (checked in grpc-js 1.14).
 */
import * as grpc from "@grpc/grpc-js";

export interface ServerTlsMaterial {
  readonly caCertificatePem: string;
  readonly certificatePem: string;
  readonly privateKeyPem: string;
}

export class ClientCertificateRequestingCredentials extends grpc.ServerCredentials {
  constructor(material: ServerTlsMaterial) {
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
