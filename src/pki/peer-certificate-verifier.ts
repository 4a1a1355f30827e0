/**
 * Turns the certificate of a peer link (the TLS client certificate of an inbound peer RPC) into the
 * peer id it proves, or refuses with UNAUTHENTICATED. A peer certificate is one the cluster CA issued
 * with issuePeerCertificate: signed by the CA, inside its dates, not a CA, marked for both serverAuth
 * and clientAuth, and naming exactly one `urn:lockbox:peer:<id>` URI equal to its common name, with
 * no role or project. A client identity certificate (a role URI, clientAuth only) is never a peer,
 * and a peer certificate is never a client (src/pki/client-certificate-verifier.ts refuses its URI).
 *
 * Whether that peer is a current, non-fenced member is the control state's question (issue 9), not
 * this one's.
 */
import { X509Certificate as NodeX509Certificate, createHash } from "node:crypto";
import { LockboxError } from "../errors.js";
import { isNodeId } from "../../cluster/node-id.js";

export const PEER_URI_PREFIX = "urn:lockbox:peer:";

const SERVER_AUTH_OID = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH_OID = "1.3.6.1.5.5.7.3.2";
const LOCKBOX_URI_PREFIX = "urn:lockbox:";

/** Who a verified peer certificate proves: its peer id, and the serial a revocation names it by. */
export interface PeerIdentity {
  readonly peerId: string;
  /** Upper-case hex, as node prints it. */
  readonly serialNumber: string;
}

interface Verified {
  readonly identity: PeerIdentity;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export class PeerCertificateVerifier {
  readonly #ca: NodeX509Certificate;
  // A peer link is long-lived and its certificate the same on every call: skip re-parsing it.
  readonly #cache = new Map<string, Verified>();
  readonly #cacheEntriesMax: number;

  constructor(caCertificatePem: string, options: { cacheEntriesMax?: number } = {}) {
    this.#ca = new NodeX509Certificate(caCertificatePem);
    this.#cacheEntriesMax = options.cacheEntriesMax ?? 256;
  }

  /** The peer proven by the DER certificate `der` as of `now`; throws UNAUTHENTICATED. */
  verify(der: Uint8Array | undefined, now: Date = new Date()): PeerIdentity {
    if (der === undefined || der.length === 0) throw unauthenticated("no peer certificate");
    const digest = createHash("sha256").update(der).digest("hex");
    let verified = this.#cache.get(digest);
    if (verified === undefined) {
      verified = this.#verifyUncached(der);
      if (this.#cache.size >= this.#cacheEntriesMax) this.#cache.delete(this.#cache.keys().next().value!);
      this.#cache.set(digest, verified);
    }
    if (now < verified.notBefore) throw unauthenticated("peer certificate is not valid yet");
    if (now > verified.notAfter) throw unauthenticated("peer certificate has expired");
    return verified.identity;
  }

  #verifyUncached(der: Uint8Array): Verified {
    let cert: NodeX509Certificate;
    try {
      cert = new NodeX509Certificate(der);
    } catch (e) {
      throw unauthenticated("peer certificate cannot be parsed", e);
    }
    if (!cert.checkIssued(this.#ca) || !cert.verify(this.#ca.publicKey)) {
      throw unauthenticated("peer certificate is not signed by the cluster CA");
    }
    const identity = Object.freeze({ peerId: peerIdOf(cert), serialNumber: cert.serialNumber.toUpperCase() });
    return { identity, ...validity(cert) };
  }
}

/**
 * The peer id a certificate names, checking only its form (not who signed it): for the client side
 * of a peer link, where TLS has already chained the server's certificate to the cluster CA.
 */
export function peerIdOf(cert: NodeX509Certificate): string {
  if (cert.ca) throw unauthenticated("peer certificate is a CA certificate");
  // node's `keyUsage` is the extended key usage list (undefined without the extension).
  const usages = cert.keyUsage ?? [];
  if (!usages.includes(SERVER_AUTH_OID) || !usages.includes(CLIENT_AUTH_OID)) {
    throw unauthenticated("peer certificate is not marked for both serverAuth and clientAuth");
  }
  const commonNames = cert.subject.split("\n").filter((line) => line.startsWith("CN="));
  const id = commonNames.length === 1 ? commonNames[0]!.slice(3) : "";
  if (!isNodeId(id)) throw unauthenticated("peer certificate has no common name that is a peer id");
  // node renders SANs as "URI:a, DNS:b"; a value with unusual characters is quoted and then fails.
  const uris = (cert.subjectAltName ?? "")
    .split(", ")
    .filter((n) => n.startsWith("URI:" + LOCKBOX_URI_PREFIX))
    .map((n) => n.slice("URI:".length));
  if (uris.length !== 1 || uris[0] !== PEER_URI_PREFIX + id) {
    throw unauthenticated(`peer certificate must name exactly one ${PEER_URI_PREFIX}<its common name>`);
  }
  return id;
}

function validity(cert: NodeX509Certificate): { notBefore: Date; notAfter: Date } {
  const notBefore = new Date(cert.validFrom);
  const notAfter = new Date(cert.validTo);
  if (Number.isNaN(notBefore.getTime()) || Number.isNaN(notAfter.getTime())) {
    throw unauthenticated("peer certificate has unreadable validity dates");
  }
  return { notBefore, notAfter };
}

const unauthenticated = (message: string, cause?: unknown): LockboxError =>
  new LockboxError("UNAUTHENTICATED", message, undefined, cause === undefined ? undefined : { cause });
