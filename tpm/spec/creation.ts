import { TpmDecodeError } from "../marshal/decode-error.js";
import type { TpmReader } from "../marshal/reader.js";
import type { TpmWriter } from "../marshal/writer.js";
import { LIMITS } from "./limits.js";
import { TpmlPcrSelection } from "./pcr.js";

/** TPMS_CREATION_DATA: the context in which Create/CreatePrimary made an object. */
export class TpmsCreationData {
  constructor(
    readonly pcrSelect: TpmlPcrSelection,
    readonly pcrDigest: Uint8Array,
    readonly locality: number,
    readonly parentNameAlg: number,
    readonly parentName: Uint8Array,
    readonly parentQualifiedName: Uint8Array,
    readonly outsideInfo: Uint8Array,
  ) {}

  static unmarshal(r: TpmReader): TpmsCreationData {
    const pcrSelect = TpmlPcrSelection.unmarshal(r);
    const pcrDigest = r.tpm2b("TPMS_CREATION_DATA.pcrDigest", LIMITS.digestBytes);
    const locality = r.u8("TPMS_CREATION_DATA.locality");
    const parentNameAlg = r.u16("TPMS_CREATION_DATA.parentNameAlg");
    const parentName = r.tpm2b("TPMS_CREATION_DATA.parentName", LIMITS.nameBytes);
    const parentQualifiedName = r.tpm2b("TPMS_CREATION_DATA.parentQualifiedName", LIMITS.nameBytes);
    const outsideInfo = r.tpm2b("TPMS_CREATION_DATA.outsideInfo", LIMITS.dataBytes);
    return new TpmsCreationData(
      pcrSelect,
      pcrDigest,
      locality,
      parentNameAlg,
      parentName,
      parentQualifiedName,
      outsideInfo,
    );
  }

  marshal(w: TpmWriter): void {
    this.pcrSelect.marshal(w);
    w.tpm2b(this.pcrDigest).u8(this.locality).u16(this.parentNameAlg);
    w.tpm2b(this.parentName).tpm2b(this.parentQualifiedName).tpm2b(this.outsideInfo);
  }
}

export class Tpm2bCreationData {
  constructor(readonly creationData: TpmsCreationData) {}

  static unmarshal(r: TpmReader): Tpm2bCreationData {
    const d = r.sized("TPM2B_CREATION_DATA", LIMITS.creationDataBytes, TpmsCreationData.unmarshal);
    if (d === undefined) throw new TpmDecodeError("INCONSISTENT", "TPM2B_CREATION_DATA", "empty");
    return new Tpm2bCreationData(d);
  }

  marshal(w: TpmWriter): void {
    w.sized((inner) => this.creationData.marshal(inner));
  }
}
