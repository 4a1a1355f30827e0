/**
 * Reads a TPM's RSA EK for enrollment: its certificate from NV, its public
 * area from CreatePrimary with the default template, checks they match and,
 * given CA certificates, that the certificate chains to one of them.
 */
import type { X509Certificate } from "node:crypto";
import { withTransient } from "../client/scoped.js";
import type { Tpm } from "../client/tpm.js";
import { createEk, readEkCertificate } from "../keys/ek.js";
import { objectName } from "../spec/name.js";
import type { TpmtPublic } from "../spec/public.js";
import {
  type ChainOptions,
  checkEkCertificateKey,
  parseCertificates,
  verifyEkCertificateChain,
} from "./ek-certificate.js";

export interface EkInfo {
  readonly certificateDer: Uint8Array;
  readonly certificate: X509Certificate;
  readonly ekPublic: TpmtPublic;
  /** nameAlg || H(TPMT_PUBLIC): what MakeCredential wraps to and the AK's parent in qualified names. */
  readonly ekName: Uint8Array;
}

/** Reads the RSA EK certificate and public area; throws EkCertificateError("public-key-mismatch") if they differ. */
export async function readEk(tpm: Tpm): Promise<EkInfo> {
  const certificateDer = await readEkCertificate(tpm);
  const [certificate] = parseCertificates(certificateDer);
  const ekPublic = await withTransient(
    tpm,
    () => createEk(tpm),
    async (ek) => ek.publicArea,
  );
  checkEkCertificateKey(certificate!, ekPublic);
  return { certificateDer, certificate: certificate!, ekPublic, ekName: objectName(ekPublic) };
}

/** readEk, then the certificate chain against `caCerts`; returns the chain (EK certificate first). */
export async function readAndVerifyEk(
  tpm: Tpm,
  caCerts: readonly X509Certificate[],
  options: ChainOptions = {},
): Promise<EkInfo & { chain: X509Certificate[] }> {
  const info = await readEk(tpm);
  return { ...info, chain: verifyEkCertificateChain(info.certificate, caCerts, options) };
}
