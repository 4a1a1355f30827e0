import { TpmDecodeError } from "../marshal/decode-error.js";
import type { TpmReader } from "../marshal/reader.js";
import type { TpmWriter } from "../marshal/writer.js";
import { LIMITS } from "./limits.js";

/** TPMS_NV_PUBLIC: the public description of an NV index. */
export class TpmsNvPublic {
  constructor(
    readonly nvIndex: number,
    readonly nameAlg: number,
    readonly attributes: number,
    readonly authPolicy: Uint8Array,
    readonly dataSize: number,
  ) {}

  static unmarshal(r: TpmReader): TpmsNvPublic {
    const nvIndex = r.u32("TPMS_NV_PUBLIC.nvIndex");
    const nameAlg = r.u16("TPMS_NV_PUBLIC.nameAlg");
    const attributes = r.u32("TPMS_NV_PUBLIC.attributes");
    const authPolicy = r.tpm2b("TPMS_NV_PUBLIC.authPolicy", LIMITS.digestBytes);
    return new TpmsNvPublic(nvIndex, nameAlg, attributes, authPolicy, r.u16("TPMS_NV_PUBLIC.dataSize"));
  }

  marshal(w: TpmWriter): void {
    w.u32(this.nvIndex).u16(this.nameAlg).u32(this.attributes).tpm2b(this.authPolicy).u16(this.dataSize);
  }
}

export class Tpm2bNvPublic {
  constructor(readonly nvPublic: TpmsNvPublic) {}

  static unmarshal(r: TpmReader): Tpm2bNvPublic {
    const p = r.sized("TPM2B_NV_PUBLIC", LIMITS.publicBytes, TpmsNvPublic.unmarshal);
    if (p === undefined) throw new TpmDecodeError("INCONSISTENT", "TPM2B_NV_PUBLIC", "empty");
    return new Tpm2bNvPublic(p);
  }

  marshal(w: TpmWriter): void {
    w.sized((inner) => this.nvPublic.marshal(inner));
  }
}
