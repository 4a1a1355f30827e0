/**
 * MakeCredential in software, the verifier's side of credential activation
 * (TPM 2.0 Part 1 §24, Part 3 TPM2_MakeCredential). The verifier wraps a
 * secret credential to a peer's EK, bound to the name of the AK it claims;
 * the peer's TPM releases it (TPM2_ActivateCredential) only when that very AK
 * is loaded next to that EK. So a correct answer proves EK and AK share a TPM.
 *
 *   seed            random, nameAlg-digest sized
 *   encryptedSecret RSA-OAEP(EK, seed, hash = EK nameAlg, label "IDENTITY\0")
 *   symKey          KDFa(nameAlg, seed, "STORAGE", AK name, "", EK symmetric keyBits)
 *   encIdentity     AES-CFB(symKey, IV = 0, TPM2B_DIGEST(credential))
 *   hmacKey         KDFa(nameAlg, seed, "INTEGRITY", "", "", digest bits)
 *   integrityHMAC   HMAC(nameAlg, hmacKey, encIdentity || AK name)
 */
import { constants, createCipheriv, createHmac, publicEncrypt, randomBytes } from "node:crypto";
import { kdfa, type KdfHash } from "../crypto/kdf.js";
import { publicKeyFromTpmt } from "../keys/public-key.js";
import { encode } from "../marshal/writer.js";
import { TPMA_OBJECT, TPM_ALG_ID } from "../spec/constants.js";
import { Tpm2bIdObject, TpmsIdObject } from "../spec/credential.js";
import { digestSize, nodeHashName } from "../spec/hash.js";
import type { TpmtPublic } from "../spec/public.js";

export class CredentialError extends Error {
  override readonly name = "CredentialError";
  constructor(
    readonly code: "bad-credential" | "bad-ak-name" | "unsupported-ek",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface MakeCredentialInput {
  /** The peer's EK public area (from its certificate check or enrollment). */
  readonly ekPublic: TpmtPublic;
  /** The name of the AK the peer claims: nameAlg || H(AK TPMT_PUBLIC). */
  readonly akName: Uint8Array;
  /** The secret to release; 1 to (EK nameAlg digest size) bytes. */
  readonly credential: Uint8Array;
  /** For tests only: a fixed seed instead of a random one. */
  readonly seedForTest?: Uint8Array;
}

export interface MadeCredential {
  /** TPMS_ID_OBJECT (the contents of TPM2B_ID_OBJECT). */
  readonly credentialBlob: TpmsIdObject;
  /** The contents of TPM2B_ENCRYPTED_SECRET: the seed under the EK. */
  readonly secret: Uint8Array;
  /** Marshalled TPM2B_ID_OBJECT (with its size), as TPM2_ActivateCredential takes it. */
  readonly idObjectBytes: Uint8Array;
  /** Marshalled TPM2B_ENCRYPTED_SECRET (with its size). */
  readonly encryptedSecretBytes: Uint8Array;
}

const IDENTITY_LABEL = Buffer.from("IDENTITY\0", "latin1");
const KDF_HASHES: ReadonlySet<string> = new Set(["sha1", "sha256", "sha384", "sha512"]);

export function makeCredential(input: MakeCredentialInput): MadeCredential {
  const ek = input.ekPublic;
  const { hash, digestBytes, symKeyBits } = checkEk(ek);
  if (input.credential.length === 0 || input.credential.length > digestBytes) {
    throw new CredentialError(
      "bad-credential",
      `credential must be 1..${digestBytes} bytes (the EK nameAlg digest size), got ${input.credential.length}`,
    );
  }
  checkAkName(input.akName);

  const seed = input.seedForTest ?? randomBytes(digestBytes);
  if (seed.length !== digestBytes)
    throw new CredentialError("bad-credential", "test seed has the wrong size");
  const secret = publicEncrypt(
    {
      key: publicKeyFromTpmt(ek),
      padding: constants.RSA_PKCS1_OAEP_PADDING,
      oaepHash: hash,
      oaepLabel: IDENTITY_LABEL,
    },
    seed,
  );

  const symKey = kdfa(hash, seed, "STORAGE", input.akName, new Uint8Array(0), symKeyBits);
  const plaintext = encode((w) => w.tpm2b(input.credential));
  const cipher = createCipheriv(`aes-${symKeyBits}-cfb`, symKey, Buffer.alloc(16));
  const encIdentity = Buffer.concat([cipher.update(plaintext), cipher.final()]);

  const hmacKey = kdfa(hash, seed, "INTEGRITY", new Uint8Array(0), new Uint8Array(0), digestBytes * 8);
  const integrityHmac = createHmac(hash, hmacKey).update(encIdentity).update(input.akName).digest();

  const credentialBlob = new TpmsIdObject(new Uint8Array(integrityHmac), new Uint8Array(encIdentity));
  return {
    credentialBlob,
    secret: new Uint8Array(secret),
    idObjectBytes: encode((w) => new Tpm2bIdObject(credentialBlob).marshal(w)),
    encryptedSecretBytes: encode((w) => w.tpm2b(secret)),
  };
}

/** The EK must be an RSA restricted decryption key with an AES-CFB symmetric (the default EK template). */
function checkEk(ek: TpmtPublic): { hash: KdfHash; digestBytes: number; symKeyBits: number } {
  if (ek.type !== TPM_ALG_ID.RSA) {
    throw new CredentialError("unsupported-ek", "only RSA EKs are supported for MakeCredential");
  }
  const required = TPMA_OBJECT.restricted | TPMA_OBJECT.decrypt;
  if ((ek.objectAttributes & required) !== required || (ek.objectAttributes & TPMA_OBJECT.sign) !== 0) {
    throw new CredentialError("unsupported-ek", "the EK is not a restricted decryption key");
  }
  const sym = ek.rsaParms().symmetric;
  if (
    sym.algorithm !== TPM_ALG_ID.AES ||
    sym.mode !== TPM_ALG_ID.CFB ||
    ![128, 192, 256].includes(sym.keyBits)
  ) {
    throw new CredentialError("unsupported-ek", "the EK's symmetric algorithm is not AES-CFB");
  }
  const hash = nodeHashName(ek.nameAlg);
  const digestBytes = digestSize(ek.nameAlg);
  if (hash === undefined || digestBytes === undefined || !KDF_HASHES.has(hash)) {
    throw new CredentialError("unsupported-ek", `EK nameAlg 0x${ek.nameAlg.toString(16)} is not supported`);
  }
  return { hash: hash as KdfHash, digestBytes, symKeyBits: sym.keyBits };
}

function checkAkName(name: Uint8Array): void {
  const size = name.length >= 2 ? digestSize((name[0]! << 8) | name[1]!) : undefined;
  if (size === undefined || name.length !== 2 + size) {
    throw new CredentialError(
      "bad-ak-name",
      "AK name must be a hash algorithm id followed by a digest of its size",
    );
  }
}
