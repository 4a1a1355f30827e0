/** Why an EK certificate was refused. Branch on `code`. */
export type EkCertificateErrorCode =
  | "malformed-certificate" // not a parsable X.509 certificate (DER or PEM)
  | "public-key-mismatch" // the certificate certifies a key other than the TPM's EK
  | "no-issuer" // no configured CA certificate has the issuer's name
  | "bad-signature" // a CA with the right name exists, but did not sign the certificate (a different CA)
  | "not-yet-valid" // a certificate in the chain is not valid yet
  | "expired" // a certificate in the chain is no longer valid
  | "issuer-not-ca" // an issuing certificate lacks basicConstraints CA:TRUE
  | "chain-too-long" // more links than allowed before reaching a root
  | "no-trust-anchor"; // no configured root (self-signed) CA certificate was given

export class EkCertificateError extends Error {
  override readonly name = "EkCertificateError";
  constructor(
    readonly code: EkCertificateErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
