/**
 * The cluster CA and the certificates it issues, all ECDSA P-256 / SHA-256:
 * - the CA itself (self-signed, 10 years, may sign leaf certificates only);
 * - a peer's certificate (SAN: 127.0.0.1, localhost and any configured
 *   names, and the URI `urn:lockbox:peer:<peer id>` that marks it as a
 *   peer's; serverAuth and clientAuth, for the peer links of src/raft);
 * - client identity certificates: CN = identity, the role and projects as
 *   SAN URIs, clientAuth only.
 * Everything goes in and out as PEM strings; callers decide where they live.
 */
import { randomBytes } from "node:crypto";
import { isIP } from "node:net";
import { LockboxError } from "../errors.js";
import { type Role, PROJECT_URI_PREFIX, ROLE_URI_PREFIX } from "../identity/caller.js";
import { PEER_URI_PREFIX } from "./peer-certificate-verifier.js";
import { assertValidIdentityName, assertValidProjectName } from "./identity-names.js";
import { webcrypto, x509 } from "./x509.js";

export interface CertifiedKey {
  readonly certificatePem: string;
  readonly privateKeyPem: string;
}

export const CA_VALIDITY_DAYS = 3650;
export const PEER_VALIDITY_DAYS = 825;
export const CLIENT_VALIDITY_DAYS_DEFAULT = 365;
export const CLIENT_VALIDITY_DAYS_MAX = 3650;

const DAY_MS = 24 * 60 * 60 * 1000;
// Certificates start slightly in the past so that a peer whose clock is a
// little behind the issuer's still accepts them.
const BACKDATE_MS = 5 * 60 * 1000;

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

export async function createClusterCa(params: { clusterId: string; now?: Date }): Promise<CertifiedKey> {
  const now = params.now ?? new Date();
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ CN: [`lockbox cluster CA ${params.clusterId}`] }, { O: ["lockbox"] }],
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + CA_VALIDITY_DAYS * DAY_MS),
    keys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certificatePem: cert.toString("pem"), privateKeyPem: await exportPrivateKey(keys.privateKey) };
}

export async function issuePeerCertificate(
  ca: CertifiedKey,
  params: { peerId: string; hostNames?: readonly string[]; now?: Date },
): Promise<CertifiedKey> {
  assertValidIdentityName("peer_id", params.peerId);
  const names = new Set(["127.0.0.1", "localhost", ...(params.hostNames ?? [])]);
  const san = [...names].map((n): x509.JsonGeneralName => ({ type: isIP(n) !== 0 ? "ip" : "dns", value: n }));
  san.push({ type: "url", value: PEER_URI_PREFIX + params.peerId });
  return issueLeaf(ca, {
    commonName: params.peerId,
    san,
    usages: [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
    keyUsage: x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement,
    days: PEER_VALIDITY_DAYS,
    now: params.now ?? new Date(),
  });
}

/**
 * A peer's certificate for a key the peer made itself (the attested join,
 * src/attestation): the same certificate as issuePeerCertificate's, but the
 * private key never leaves the joiner. `publicKeySpki` must be a P-256 key.
 */
export async function issuePeerCertificateForKey(
  ca: CertifiedKey,
  params: { peerId: string; publicKeySpki: Uint8Array; hostNames?: readonly string[]; now?: Date },
): Promise<string> {
  assertValidIdentityName("peer_id", params.peerId);
  let publicKey: CryptoKey;
  try {
    publicKey = await webcrypto.subtle.importKey("spki", params.publicKeySpki, ALGORITHM, true, ["verify"]);
  } catch (cause) {
    throw new LockboxError("INVALID_ARGUMENT", "public key: not a P-256 SPKI key", "public_key", { cause });
  }
  const names = new Set(["127.0.0.1", "localhost", ...(params.hostNames ?? [])]);
  const san = [...names].map((n): x509.JsonGeneralName => ({ type: isIP(n) !== 0 ? "ip" : "dns", value: n }));
  san.push({ type: "url", value: PEER_URI_PREFIX + params.peerId });
  const issued = await issueLeaf(ca, {
    commonName: params.peerId,
    san,
    usages: [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
    keyUsage: x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement,
    days: PEER_VALIDITY_DAYS,
    now: params.now ?? new Date(),
    publicKey,
  });
  return issued.certificatePem;
}

export interface ClientIdentity {
  readonly identity: string;
  readonly role: Role;
  readonly projects: readonly string[];
}

export async function issueClientCertificate(
  ca: CertifiedKey,
  params: ClientIdentity & { days?: number; now?: Date; notBefore?: Date },
): Promise<CertifiedKey> {
  assertValidIdentityName("identity", params.identity);
  params.projects.forEach((p) => assertValidProjectName("project", p));
  const days = params.days ?? CLIENT_VALIDITY_DAYS_DEFAULT;
  if (!Number.isInteger(days) || days < 1 || days > CLIENT_VALIDITY_DAYS_MAX) {
    throw new LockboxError(
      "INVALID_ARGUMENT",
      `days: must be an integer from 1 to ${CLIENT_VALIDITY_DAYS_MAX}`,
      "days",
    );
  }
  const san: x509.JsonGeneralName[] = [
    { type: "url", value: ROLE_URI_PREFIX + params.role },
    ...[...new Set(params.projects)].map((p): x509.JsonGeneralName => ({
      type: "url",
      value: PROJECT_URI_PREFIX + p,
    })),
  ];
  return issueLeaf(ca, {
    commonName: params.identity,
    san,
    usages: [x509.ExtendedKeyUsage.clientAuth],
    keyUsage: x509.KeyUsageFlags.digitalSignature,
    days,
    now: params.now ?? new Date(),
    ...(params.notBefore ? { notBefore: params.notBefore } : {}),
  });
}

async function issueLeaf(
  ca: CertifiedKey,
  p: {
    commonName: string;
    san: x509.JsonGeneralName[];
    usages: x509.ExtendedKeyUsage[];
    keyUsage: x509.KeyUsageFlags;
    days: number;
    now: Date;
    notBefore?: Date;
    /** The subject's own key; without it a key pair is made here and its private key returned. */
    publicKey?: CryptoKey;
  },
): Promise<CertifiedKey> {
  const caCert = new x509.X509Certificate(ca.certificatePem);
  const caKey = await importPrivateKey(ca.privateKeyPem);
  const keys = p.publicKey === undefined ? await generateKeyPair() : undefined;
  const notBefore = p.notBefore ?? new Date(p.now.getTime() - BACKDATE_MS);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: [{ CN: [p.commonName] }, { O: ["lockbox"] }],
    issuer: caCert.subject,
    notBefore,
    notAfter: new Date(notBefore.getTime() + BACKDATE_MS + p.days * DAY_MS),
    publicKey: keys?.publicKey ?? p.publicKey!,
    signingKey: caKey,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(p.keyUsage, true),
      new x509.ExtendedKeyUsageExtension(p.usages, false),
      new x509.SubjectAlternativeNameExtension(p.san, false),
      await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
    ],
  });
  return {
    certificatePem: cert.toString("pem"),
    privateKeyPem: keys === undefined ? "" : await exportPrivateKey(keys.privateKey),
  };
}

function generateKeyPair(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
}

async function exportPrivateKey(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

async function importPrivateKey(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decodeFirst(pem);
  return webcrypto.subtle.importKey("pkcs8", der, ALGORITHM, false, ["sign"]) as Promise<CryptoKey>;
}

/** 128 random bits, top bit cleared so the DER integer stays positive. */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return bytes.toString("hex");
}
