import { TpmDecodeError } from "../marshal/decode-error.js";
import type { TpmReader } from "../marshal/reader.js";
import type { TpmWriter } from "../marshal/writer.js";
import { TPM_ALG_ID } from "./constants.js";

const A = TPM_ALG_ID;

/**
 * TPMT_SYM_DEF and TPMT_SYM_DEF_OBJECT: a symmetric algorithm, key size and
 * mode. For NULL nothing follows the algorithm; for XOR (sessions only) the
 * "keyBits" field holds a hash algorithm and no mode follows.
 */
export class TpmtSymDef {
  constructor(
    readonly algorithm: number,
    readonly keyBits = 0,
    readonly mode = 0,
  ) {}

  static readonly NULL = new TpmtSymDef(A.NULL);
  static readonly AES_128_CFB = new TpmtSymDef(A.AES, 128, A.CFB);

  static unmarshal(r: TpmReader, allowXor = true): TpmtSymDef {
    const algorithm = r.u16("TPMT_SYM_DEF.algorithm");
    if (algorithm === A.NULL) return new TpmtSymDef(algorithm);
    if (algorithm === A.XOR) {
      if (!allowXor)
        throw new TpmDecodeError("UNKNOWN_SELECTOR", "TPMT_SYM_DEF_OBJECT.algorithm", "XOR not allowed");
      return new TpmtSymDef(algorithm, r.u16("TPMT_SYM_DEF.keyBits.xor"));
    }
    if (algorithm !== A.AES && algorithm !== A.SM4 && algorithm !== A.CAMELLIA && algorithm !== A.TDES) {
      throw new TpmDecodeError("UNKNOWN_SELECTOR", "TPMT_SYM_DEF.algorithm", `0x${algorithm.toString(16)}`);
    }
    const keyBits = r.u16("TPMT_SYM_DEF.keyBits");
    return new TpmtSymDef(algorithm, keyBits, r.u16("TPMT_SYM_DEF.mode"));
  }

  marshal(w: TpmWriter): void {
    w.u16(this.algorithm);
    if (this.algorithm === A.NULL) return;
    w.u16(this.keyBits);
    if (this.algorithm !== A.XOR) w.u16(this.mode);
  }
}

/** Which TPMU_*_SCHEME union a scheme belongs to; each admits different algorithms. */
export type SchemeUnion = "RSA" | "ECC" | "KEYEDHASH" | "KDF" | "SIG";

const HASH_ONLY: Record<SchemeUnion, readonly number[]> = {
  RSA: [A.RSASSA, A.RSAPSS, A.OAEP],
  ECC: [A.ECDSA, A.ECDH, A.ECSCHNORR, A.SM2, A.ECMQV],
  KEYEDHASH: [A.HMAC],
  KDF: [A.MGF1, A.KDF1_SP800_56A, A.KDF2, A.KDF1_SP800_108],
  SIG: [A.RSASSA, A.RSAPSS, A.ECDSA, A.SM2, A.ECSCHNORR, A.HMAC],
};

/**
 * The TPMT_*_SCHEME family (RSA, ECC, keyed-hash, KDF, signature schemes):
 * a scheme id and its details. Details are: nothing (NULL, RSAES), a hash
 * algorithm (most), a hash and a count (ECDAA), or a hash and a KDF (XOR).
 */
export class TpmtScheme {
  constructor(
    readonly scheme: number,
    readonly hashAlg = 0,
    readonly count = 0,
    readonly kdf = 0,
  ) {}

  static readonly NULL = new TpmtScheme(A.NULL);

  static unmarshal(r: TpmReader, union: SchemeUnion): TpmtScheme {
    const what = `TPMT_${union}_SCHEME`;
    const scheme = r.u16(`${what}.scheme`);
    if (scheme === A.NULL) return TpmtScheme.NULL;
    if (union === "RSA" && scheme === A.RSAES) return new TpmtScheme(scheme);
    if (HASH_ONLY[union].includes(scheme)) return new TpmtScheme(scheme, r.u16(`${what}.hashAlg`));
    if ((union === "ECC" || union === "SIG") && scheme === A.ECDAA) {
      const hashAlg = r.u16(`${what}.hashAlg`);
      return new TpmtScheme(scheme, hashAlg, r.u16(`${what}.count`));
    }
    if (union === "KEYEDHASH" && scheme === A.XOR) {
      const hashAlg = r.u16(`${what}.hashAlg`);
      return new TpmtScheme(scheme, hashAlg, 0, r.u16(`${what}.kdf`));
    }
    throw new TpmDecodeError("UNKNOWN_SELECTOR", `${what}.scheme`, `0x${scheme.toString(16)}`);
  }

  marshal(w: TpmWriter): void {
    w.u16(this.scheme);
    if (this.scheme === A.NULL || this.scheme === A.RSAES) return;
    w.u16(this.hashAlg);
    if (this.scheme === A.ECDAA) w.u16(this.count);
    if (this.scheme === A.XOR) w.u16(this.kdf);
  }
}
