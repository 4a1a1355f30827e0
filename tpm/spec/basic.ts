import { TpmDecodeError } from "../marshal/decode-error.js";
import type { TpmReader } from "../marshal/reader.js";
import type { TpmWriter } from "../marshal/writer.js";
import { digestSize } from "./hash.js";
import { LIMITS } from "./limits.js";

/** TPMT_HA: a hash algorithm and a digest of exactly that algorithm's size. */
export class TpmtHa {
  constructor(
    readonly hashAlg: number,
    readonly digest: Uint8Array,
  ) {}

  static unmarshal(r: TpmReader): TpmtHa {
    const hashAlg = r.u16("TPMT_HA.hashAlg");
    if (hashAlg === 0x0010) return new TpmtHa(hashAlg, new Uint8Array(0));
    const size = digestSize(hashAlg);
    if (size === undefined) {
      throw new TpmDecodeError(
        "UNKNOWN_SELECTOR",
        "TPMT_HA.hashAlg",
        `unknown hash 0x${hashAlg.toString(16)}`,
      );
    }
    return new TpmtHa(hashAlg, r.bytesN(size, "TPMT_HA.digest"));
  }

  marshal(w: TpmWriter): void {
    w.u16(this.hashAlg).bytes(this.digest);
  }
}

/** TPML_DIGEST_VALUES: the digests given to PCR_Extend, one per bank. */
export class TpmlDigestValues {
  constructor(readonly digests: readonly TpmtHa[]) {}

  static unmarshal(r: TpmReader): TpmlDigestValues {
    const count = r.count("TPML_DIGEST_VALUES", LIMITS.hashCount);
    const digests: TpmtHa[] = [];
    for (let i = 0; i < count; i++) digests.push(TpmtHa.unmarshal(r));
    return new TpmlDigestValues(digests);
  }

  marshal(w: TpmWriter): void {
    w.u32(this.digests.length);
    for (const d of this.digests) d.marshal(w);
  }
}

/** TPMT_TK_CREATION: proof that the TPM created an object (from Create/CreatePrimary). */
export class TpmtTkCreation {
  constructor(
    readonly tag: number,
    readonly hierarchy: number,
    readonly digest: Uint8Array,
  ) {}

  static unmarshal(r: TpmReader): TpmtTkCreation {
    const tag = r.u16("TPMT_TK_CREATION.tag");
    const hierarchy = r.u32("TPMT_TK_CREATION.hierarchy");
    return new TpmtTkCreation(tag, hierarchy, r.tpm2b("TPMT_TK_CREATION.digest", LIMITS.digestBytes));
  }

  marshal(w: TpmWriter): void {
    w.u16(this.tag).u32(this.hierarchy).tpm2b(this.digest);
  }
}

/** TPMS_ECC_POINT: affine coordinates, each a TPM2B_ECC_PARAMETER. */
export class TpmsEccPoint {
  constructor(
    readonly x: Uint8Array,
    readonly y: Uint8Array,
  ) {}

  static unmarshal(r: TpmReader): TpmsEccPoint {
    const x = r.tpm2b("TPMS_ECC_POINT.x", LIMITS.eccParameterBytes);
    const y = r.tpm2b("TPMS_ECC_POINT.y", LIMITS.eccParameterBytes);
    return new TpmsEccPoint(x, y);
  }

  marshal(w: TpmWriter): void {
    w.tpm2b(this.x).tpm2b(this.y);
  }
}
