/**
 * Turns a client certificate presented over TLS into a Caller, or refuses
 * with UNAUTHENTICATED. The TLS layer only requests client certificates
 * (so that a call without one gets a gRPC status instead of a failed
 * handshake); this is where they are actually checked: issued and signed by
 * the cluster CA, inside its validity dates, not a CA, marked for clientAuth,
 * with a valid common name and exactly one lockbox role.
 */
import { X509Certificate as NodeX509Certificate, hash } from "node:crypto";
import { LockboxError } from "../errors.js";
import { type Caller, PROJECT_URI_PREFIX, ROLE_URI_PREFIX, isRole } from "../identity/caller.js";
import { isValidIdentityName, isValidProjectName } from "./identity-names.js";

const CLIENT_AUTH_OID = "1.3.6.1.5.5.7.3.2";
const LOCKBOX_URI_PREFIX = "urn:lockbox:";

/** Parsed certificates that passed every check but the dates, by DER digest. */
interface Verified {
  readonly caller: Caller;
  /** Upper-case hex, as the control state's revocation list names it. */
  readonly serialNumber: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export class ClientCertificateVerifier {
  private readonly ca: NodeX509Certificate;
  // Verifying an ECDSA signature and parsing SANs on every call is wasted
  // work for a long-lived connection; remember recent good certificates.
  private readonly cache = new Map<string, Verified>();
  private readonly cacheEntriesMax: number;
  private readonly admit: ((identity: string, serialNumber: string) => string | null) | undefined;

  /**
   * `admit` is asked on every call, after the cache (a revocation must take effect on open connections):
   * null lets the certificate in, a string refuses it UNAUTHENTICATED with that reason. The control state
   * plugs its revocation list in here.
   */
  constructor(
    caCertificatePem: string,
    options: {
      cacheEntriesMax?: number;
      admit?: (identity: string, serialNumber: string) => string | null;
    } = {},
  ) {
    this.ca = new NodeX509Certificate(caCertificatePem);
    this.cacheEntriesMax = options.cacheEntriesMax ?? 1024;
    this.admit = options.admit;
  }

  /** The caller named by the DER certificate `der`, as of `now`; throws UNAUTHENTICATED. */
  verify(der: Uint8Array | undefined, now: Date = new Date()): Caller {
    if (der === undefined || der.length === 0) throw unauthenticated("no client certificate");
    const digest = hash("sha256", der, "hex");
    let verified = this.cache.get(digest);
    if (verified === undefined) {
      verified = this.verifyUncached(der);
      if (this.cache.size >= this.cacheEntriesMax) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(digest, verified);
    }
    if (now < verified.notBefore) throw unauthenticated("client certificate is not valid yet");
    if (now > verified.notAfter) throw unauthenticated("client certificate has expired");
    const refusal = this.admit?.(verified.caller.identity, verified.serialNumber) ?? null;
    if (refusal !== null) throw unauthenticated(`client certificate refused: ${refusal}`);
    return verified.caller;
  }

  private verifyUncached(der: Uint8Array): Verified {
    let cert: NodeX509Certificate;
    try {
      cert = new NodeX509Certificate(der);
    } catch (e) {
      throw unauthenticated("client certificate cannot be parsed", e);
    }
    if (!cert.checkIssued(this.ca) || !cert.verify(this.ca.publicKey)) {
      throw unauthenticated("client certificate is not signed by the cluster CA");
    }
    if (cert.ca) throw unauthenticated("client certificate is a CA certificate");
    // node's `keyUsage` is the extended key usage list (undefined without the extension).
    if (!(cert.keyUsage ?? []).includes(CLIENT_AUTH_OID)) {
      throw unauthenticated("client certificate is not marked for clientAuth");
    }
    const commonNames = cert.subject.split("\n").filter((line) => line.startsWith("CN="));
    const identity = commonNames.length === 1 ? commonNames[0]!.slice(3) : "";
    if (!isValidIdentityName(identity)) throw unauthenticated("client certificate has no valid common name");

    // node renders SANs as "URI:a, DNS:b"; a value with unusual characters is
    // quoted, which the name rules below then refuse.
    const uris = (cert.subjectAltName ?? "")
      .split(", ")
      .filter((n) => n.startsWith("URI:" + LOCKBOX_URI_PREFIX))
      .map((n) => n.slice("URI:".length));
    const roles = uris
      .filter((u) => u.startsWith(ROLE_URI_PREFIX))
      .map((u) => u.slice(ROLE_URI_PREFIX.length));
    const projects = uris
      .filter((u) => u.startsWith(PROJECT_URI_PREFIX))
      .map((u) => u.slice(PROJECT_URI_PREFIX.length));
    const role = roles.length === 1 ? roles[0]! : "";
    if (!isRole(role)) throw unauthenticated("client certificate must carry exactly one lockbox role");
    if (!projects.every(isValidProjectName))
      throw unauthenticated("client certificate carries an invalid project");
    if (roles.length + projects.length !== uris.length) {
      throw unauthenticated("client certificate carries an unknown lockbox name");
    }
    const notBefore = new Date(cert.validFrom);
    const notAfter = new Date(cert.validTo);
    if (Number.isNaN(notBefore.getTime()) || Number.isNaN(notAfter.getTime())) {
      throw unauthenticated("client certificate has unreadable validity dates");
    }
    return {
      caller: Object.freeze({ identity, role, projects: Object.freeze([...new Set(projects)]) }),
      serialNumber: cert.serialNumber.toUpperCase(),
      notBefore,
      notAfter,
    };
  }
}

const unauthenticated = (message: string, cause?: unknown): LockboxError =>
  new LockboxError("UNAUTHENTICATED", message, undefined, cause === undefined ? undefined : { cause });
