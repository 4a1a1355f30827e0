/**
 * EK certificate checks (DESIGN.md §5, enrollment): the certificate must
 * certify exactly this TPM's EK, and chain to a configured manufacturer CA
 * (swtpm's local CA in tests): EK certificate -> intermediate(s) -> root.
 * Every link is checked by signature, not by name: all swtpm local CAs share
 * the same subject names, so a name match alone proves nothing.
 */
import { X509Certificate } from "node:crypto";
import { publicKeyFromTpmt } from "../keys/public-key.js";
import type { TpmtPublic } from "../spec/public.js";
import { EkCertificateError } from "./ek-certificate-error.js";

export interface ChainOptions {
  /** The time to check validity at; default now. */
  readonly now?: Date;
  /** Certificates between the EK certificate and the root; default 4. */
  readonly intermediatesMax?: number;
}

const DEFAULT_INTERMEDIATES_MAX = 4;
const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
/** Bounds the work of parsing a hostile bundle. */
const CERTIFICATES_PER_INPUT_MAX = 64;

/** Parses one DER certificate, or every certificate of a PEM bundle. */
export function parseCertificates(input: Uint8Array | string): X509Certificate[] {
  const text = typeof input === "string" ? input : Buffer.from(input).toString("latin1");
  const blocks = text.match(PEM_BLOCK);
  try {
    if (blocks !== null) {
      if (blocks.length > CERTIFICATES_PER_INPUT_MAX) {
        throw new EkCertificateError(
          "malformed-certificate",
          `more than ${CERTIFICATES_PER_INPUT_MAX} certificates`,
        );
      }
      return blocks.map((b) => new X509Certificate(b));
    }
    if (typeof input === "string")
      throw new EkCertificateError("malformed-certificate", "no PEM certificate found");
    return [new X509Certificate(Buffer.from(input))];
  } catch (err) {
    if (err instanceof EkCertificateError) throw err;
    throw new EkCertificateError("malformed-certificate", "not a valid X.509 certificate", { cause: err });
  }
}

/** Throws "public-key-mismatch" unless the certificate's key is the EK's public key. */
export function checkEkCertificateKey(cert: X509Certificate, ekPublic: TpmtPublic): void {
  const certified = cert.publicKey.export({ type: "spki", format: "der" });
  const actual = publicKeyFromTpmt(ekPublic).export({ type: "spki", format: "der" });
  if (!certified.equals(actual)) {
    throw new EkCertificateError(
      "public-key-mismatch",
      "the EK certificate certifies a different key than the TPM's EK",
    );
  }
}

/**
 * Verifies `cert` up to a self-signed root among `caCerts` (which may also
 * hold intermediates). Returns the chain, EK certificate first, root last.
 */
export function verifyEkCertificateChain(
  cert: X509Certificate,
  caCerts: readonly X509Certificate[],
  options: ChainOptions = {},
): X509Certificate[] {
  const now = options.now ?? new Date();
  const intermediatesMax = options.intermediatesMax ?? DEFAULT_INTERMEDIATES_MAX;
  if (!caCerts.some(isSelfSigned)) {
    throw new EkCertificateError("no-trust-anchor", "no root (self-signed) CA certificate is configured");
  }
  const chain = [cert];
  checkValidity(cert, now, "EK certificate");
  let current = cert;
  for (let depth = 0; depth <= intermediatesMax; depth++) {
    const issuer = findIssuer(current, caCerts);
    checkValidity(issuer, now, `CA '${issuer.subject}'`);
    if (!issuer.ca) {
      throw new EkCertificateError(
        "issuer-not-ca",
        `'${issuer.subject}' issued a certificate but is not a CA`,
      );
    }
    chain.push(issuer);
    if (isSelfSigned(issuer)) return chain;
    current = issuer;
  }
  throw new EkCertificateError(
    "chain-too-long",
    `no root within ${intermediatesMax} intermediate certificates`,
  );
}

/** The CA certificate that signed `cert`: same name and a verifying signature. */
function findIssuer(cert: X509Certificate, caCerts: readonly X509Certificate[]): X509Certificate {
  const named = caCerts.filter((ca) => ca.subject === cert.issuer);
  if (named.length === 0) {
    throw new EkCertificateError(
      "no-issuer",
      `no configured CA is named '${cert.issuer}' (issuer of '${cert.subject}')`,
    );
  }
  const signer = named.find((ca) => cert.verify(ca.publicKey));
  if (signer === undefined) {
    throw new EkCertificateError(
      "bad-signature",
      `'${cert.subject}' is not signed by any configured CA named '${cert.issuer}': a different CA issued it`,
    );
  }
  return signer;
}

function isSelfSigned(cert: X509Certificate): boolean {
  return cert.subject === cert.issuer && cert.verify(cert.publicKey);
}

function checkValidity(cert: X509Certificate, now: Date, what: string): void {
  if (now < new Date(cert.validFrom)) {
    throw new EkCertificateError("not-yet-valid", `${what} is valid only from ${cert.validFrom}`);
  }
  if (now > new Date(cert.validTo)) {
    throw new EkCertificateError("expired", `${what} expired on ${cert.validTo}`);
  }
}
