/**
 * Who is calling: the client certificate of the call's TLS connection,
 * verified against the cluster CA. No certificate, or one that fails any
 * check, is UNAUTHENTICATED; the call then goes no further.
 */
import type { PeerCertificate } from "node:tls";
import { LockboxError } from "../errors.js";
import type { Caller } from "../identity/caller.js";
import type { ClientCertificateVerifier } from "../pki/client-certificate-verifier.js";

/** The part of a grpc-js server call that authentication needs. */
export interface AuthenticatableCall {
  getAuthContext(): { sslPeerCertificate?: PeerCertificate } | null;
}

export function authenticate(
  call: AuthenticatableCall,
  verifier: ClientCertificateVerifier,
  now: Date,
): Caller {
  // grpc-js exposes the peer certificate only when node's TLS layer already
  // chained it to our CA (socket.authorized); verify() checks everything again.
  const raw = call.getAuthContext()?.sslPeerCertificate?.raw;
  if (raw === undefined) {
    throw new LockboxError("UNAUTHENTICATED", "a client certificate issued by the cluster CA is required");
  }
  return verifier.verify(raw, now);
}
