import { TpmDecodeError, TpmUnionTagError } from "../marshal/decode-error.js";
import type { TpmReader } from "../marshal/reader.js";
import type { TpmWriter } from "../marshal/writer.js";
import { TpmsEccPoint } from "./basic.js";
import { TPM_ALG_ID } from "./constants.js";
import { LIMITS } from "./limits.js";
import { TpmtScheme, TpmtSymDef } from "./schemes.js";

const A = TPM_ALG_ID;

/** TPMS_RSA_PARMS. exponent 0 means the default 65537. */
export interface TpmsRsaParms {
  readonly type: typeof A.RSA;
  readonly symmetric: TpmtSymDef;
  readonly scheme: TpmtScheme;
  readonly keyBits: number;
  readonly exponent: number;
}

/** TPMS_ECC_PARMS. */
export interface TpmsEccParms {
  readonly type: typeof A.ECC;
  readonly symmetric: TpmtSymDef;
  readonly scheme: TpmtScheme;
  readonly curveId: number;
  readonly kdf: TpmtScheme;
}

/** TPMS_KEYEDHASH_PARMS. */
export interface TpmsKeyedHashParms {
  readonly type: typeof A.KEYEDHASH;
  readonly scheme: TpmtScheme;
}

/** TPMS_SYMCIPHER_PARMS. */
export interface TpmsSymCipherParms {
  readonly type: typeof A.SYMCIPHER;
  readonly symmetric: TpmtSymDef;
}

/** TPMU_PUBLIC_PARMS, tagged by the object type. */
export type TpmuPublicParms = TpmsRsaParms | TpmsEccParms | TpmsKeyedHashParms | TpmsSymCipherParms;

/** TPMU_PUBLIC_ID: an RSA modulus, an ECC point, or a digest (keyed hash, symcipher). */
export type TpmuPublicId = Uint8Array | TpmsEccPoint;

/** TPMT_PUBLIC: the public area of an object. */
export class TpmtPublic {
  constructor(
    readonly nameAlg: number,
    readonly objectAttributes: number,
    readonly authPolicy: Uint8Array,
    readonly parameters: TpmuPublicParms,
    readonly unique: TpmuPublicId,
  ) {
    const isPoint = unique instanceof TpmsEccPoint;
    if (isPoint !== (parameters.type === A.ECC)) {
      throw new TypeError("TPMT_PUBLIC: unique must be an ECC point exactly when the type is ECC");
    }
  }

  get type(): number {
    return this.parameters.type;
  }

  /** The RSA parameters; throws unless this is an RSA key. */
  rsaParms(): TpmsRsaParms {
    if (this.parameters.type !== A.RSA) throw new TpmUnionTagError("TPMU_PUBLIC_PARMS", A.RSA, this.type);
    return this.parameters;
  }

  eccParms(): TpmsEccParms {
    if (this.parameters.type !== A.ECC) throw new TpmUnionTagError("TPMU_PUBLIC_PARMS", A.ECC, this.type);
    return this.parameters;
  }

  rsaModulus(): Uint8Array {
    this.rsaParms();
    return this.unique as Uint8Array;
  }

  eccPoint(): TpmsEccPoint {
    this.eccParms();
    return this.unique as TpmsEccPoint;
  }

  hasAttribute(bit: number): boolean {
    return (this.objectAttributes & bit) === bit;
  }

  static unmarshal(r: TpmReader): TpmtPublic {
    const type = r.u16("TPMT_PUBLIC.type");
    const nameAlg = r.u16("TPMT_PUBLIC.nameAlg");
    const objectAttributes = r.u32("TPMT_PUBLIC.objectAttributes");
    const authPolicy = r.tpm2b("TPMT_PUBLIC.authPolicy", LIMITS.digestBytes);
    let parameters: TpmuPublicParms;
    let unique: TpmuPublicId;
    switch (type) {
      case A.RSA: {
        const symmetric = TpmtSymDef.unmarshal(r, false);
        const scheme = TpmtScheme.unmarshal(r, "RSA");
        const keyBits = r.u16("TPMS_RSA_PARMS.keyBits");
        const exponent = r.u32("TPMS_RSA_PARMS.exponent");
        parameters = { type: A.RSA, symmetric, scheme, keyBits, exponent };
        unique = r.tpm2b("TPMU_PUBLIC_ID.rsa", LIMITS.rsaKeyBytes);
        break;
      }
      case A.ECC: {
        const symmetric = TpmtSymDef.unmarshal(r, false);
        const scheme = TpmtScheme.unmarshal(r, "ECC");
        const curveId = r.u16("TPMS_ECC_PARMS.curveID");
        const kdf = TpmtScheme.unmarshal(r, "KDF");
        parameters = { type: A.ECC, symmetric, scheme, curveId, kdf };
        unique = TpmsEccPoint.unmarshal(r);
        break;
      }
      case A.KEYEDHASH:
        parameters = { type: A.KEYEDHASH, scheme: TpmtScheme.unmarshal(r, "KEYEDHASH") };
        unique = r.tpm2b("TPMU_PUBLIC_ID.keyedHash", LIMITS.digestBytes);
        break;
      case A.SYMCIPHER:
        parameters = { type: A.SYMCIPHER, symmetric: TpmtSymDef.unmarshal(r, false) };
        unique = r.tpm2b("TPMU_PUBLIC_ID.sym", LIMITS.digestBytes);
        break;
      default:
        throw new TpmDecodeError("UNKNOWN_SELECTOR", "TPMT_PUBLIC.type", `0x${type.toString(16)}`);
    }
    return new TpmtPublic(nameAlg, objectAttributes, authPolicy, parameters, unique);
  }

  marshal(w: TpmWriter): void {
    const p = this.parameters;
    w.u16(p.type).u16(this.nameAlg).u32(this.objectAttributes).tpm2b(this.authPolicy);
    switch (p.type) {
      case A.RSA:
        p.symmetric.marshal(w);
        p.scheme.marshal(w);
        w.u16(p.keyBits).u32(p.exponent);
        break;
      case A.ECC:
        p.symmetric.marshal(w);
        p.scheme.marshal(w);
        w.u16(p.curveId);
        p.kdf.marshal(w);
        break;
      case A.KEYEDHASH:
        p.scheme.marshal(w);
        break;
      case A.SYMCIPHER:
        p.symmetric.marshal(w);
        break;
    }
    if (this.unique instanceof TpmsEccPoint) this.unique.marshal(w);
    else w.tpm2b(this.unique);
  }
}

/** TPM2B_PUBLIC: a TPMT_PUBLIC behind a size that must match it exactly. */
export class Tpm2bPublic {
  constructor(readonly publicArea: TpmtPublic) {}

  static unmarshal(r: TpmReader): Tpm2bPublic {
    const area = r.sized("TPM2B_PUBLIC", LIMITS.publicBytes, TpmtPublic.unmarshal);
    if (area === undefined) throw new TpmDecodeError("INCONSISTENT", "TPM2B_PUBLIC", "empty public area");
    return new Tpm2bPublic(area);
  }

  marshal(w: TpmWriter): void {
    w.sized((inner) => this.publicArea.marshal(inner));
  }
}
