import { TpmDecodeError, TpmUnionTagError } from "../marshal/decode-error.js";
import type { TpmReader } from "../marshal/reader.js";
import type { TpmWriter } from "../marshal/writer.js";
import { TpmtHa } from "./basic.js";
import { TPM_ALG_ID } from "./constants.js";
import { LIMITS } from "./limits.js";

const A = TPM_ALG_ID;

/** TPMS_SIGNATURE_RSA (RSASSA, RSAPSS). */
export interface TpmsSignatureRsa {
  readonly sigAlg: typeof A.RSASSA | typeof A.RSAPSS;
  readonly hash: number;
  readonly sig: Uint8Array;
}
/** TPMS_SIGNATURE_ECC (ECDSA, ECDAA, SM2, ECSCHNORR): r and s as big-endian integers. */
export interface TpmsSignatureEcc {
  readonly sigAlg: typeof A.ECDSA | typeof A.ECDAA | typeof A.SM2 | typeof A.ECSCHNORR;
  readonly hash: number;
  readonly signatureR: Uint8Array;
  readonly signatureS: Uint8Array;
}
export interface TpmsSignatureHmac {
  readonly sigAlg: typeof A.HMAC;
  readonly hmac: TpmtHa;
}
export interface TpmsSignatureNull {
  readonly sigAlg: typeof A.NULL;
}
export type TpmuSignature = TpmsSignatureRsa | TpmsSignatureEcc | TpmsSignatureHmac | TpmsSignatureNull;

const ECC_SIGS: readonly number[] = [A.ECDSA, A.ECDAA, A.SM2, A.ECSCHNORR];

/** TPMT_SIGNATURE: a signature tagged by its algorithm. */
export class TpmtSignature {
  constructor(readonly signature: TpmuSignature) {}

  get sigAlg(): number {
    return this.signature.sigAlg;
  }

  /** The ECC signature; throws TpmUnionTagError unless this is ECDSA. */
  ecdsa(): TpmsSignatureEcc {
    const s = this.signature;
    if (s.sigAlg !== A.ECDSA) throw new TpmUnionTagError("TPMU_SIGNATURE", A.ECDSA, s.sigAlg);
    return s;
  }

  /** The RSA signature; throws TpmUnionTagError unless this is RSASSA or RSAPSS. */
  rsa(): TpmsSignatureRsa {
    const s = this.signature;
    if (s.sigAlg !== A.RSASSA && s.sigAlg !== A.RSAPSS)
      throw new TpmUnionTagError("TPMU_SIGNATURE", A.RSASSA, s.sigAlg);
    return s;
  }

  static unmarshal(r: TpmReader): TpmtSignature {
    const sigAlg = r.u16("TPMT_SIGNATURE.sigAlg");
    if (sigAlg === A.RSASSA || sigAlg === A.RSAPSS) {
      const hash = r.u16("TPMS_SIGNATURE_RSA.hash");
      return new TpmtSignature({ sigAlg, hash, sig: r.tpm2b("TPMS_SIGNATURE_RSA.sig", LIMITS.rsaKeyBytes) });
    }
    if (ECC_SIGS.includes(sigAlg)) {
      const hash = r.u16("TPMS_SIGNATURE_ECC.hash");
      const signatureR = r.tpm2b("TPMS_SIGNATURE_ECC.signatureR", LIMITS.eccParameterBytes);
      const signatureS = r.tpm2b("TPMS_SIGNATURE_ECC.signatureS", LIMITS.eccParameterBytes);
      return new TpmtSignature({
        sigAlg: sigAlg as TpmsSignatureEcc["sigAlg"],
        hash,
        signatureR,
        signatureS,
      });
    }
    if (sigAlg === A.HMAC) return new TpmtSignature({ sigAlg, hmac: TpmtHa.unmarshal(r) });
    if (sigAlg === A.NULL) return new TpmtSignature({ sigAlg });
    throw new TpmDecodeError("UNKNOWN_SELECTOR", "TPMT_SIGNATURE.sigAlg", `0x${sigAlg.toString(16)}`);
  }

  marshal(w: TpmWriter): void {
    const s = this.signature;
    w.u16(s.sigAlg);
    switch (s.sigAlg) {
      case A.RSASSA:
      case A.RSAPSS:
        w.u16(s.hash).tpm2b(s.sig);
        break;
      case A.ECDSA:
      case A.ECDAA:
      case A.SM2:
      case A.ECSCHNORR:
        w.u16(s.hash).tpm2b(s.signatureR).tpm2b(s.signatureS);
        break;
      case A.HMAC:
        s.hmac.marshal(w);
        break;
      case A.NULL:
        break;
    }
  }
}
