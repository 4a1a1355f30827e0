import { TpmDecodeError } from "../marshal/decode-error.js";
import type { TpmReader } from "../marshal/reader.js";
import type { TpmWriter } from "../marshal/writer.js";
import { LIMITS } from "./limits.js";

/** TPMS_PCR_SELECTION: one bank and a bitmap of PCRs (bit n of byte n/8 selects PCR n). */
export class TpmsPcrSelection {
  constructor(
    readonly hash: number,
    readonly pcrSelect: Uint8Array,
  ) {}

  /** A selection of the given PCR indices, with the usual 3-byte bitmap (24 PCRs) or more if needed. */
  static of(hash: number, pcrs: readonly number[]): TpmsPcrSelection {
    const maxPcr = pcrs.reduce((m, p) => Math.max(m, p), 0);
    const select = new Uint8Array(Math.max(3, (maxPcr >> 3) + 1));
    for (const pcr of pcrs) {
      if (!Number.isInteger(pcr) || pcr < 0 || pcr >= LIMITS.pcrSelectBytes * 8) {
        throw new RangeError(`PCR index out of range: ${pcr}`);
      }
      select[pcr >> 3]! |= 1 << (pcr & 7);
    }
    return new TpmsPcrSelection(hash, select);
  }

  /** The selected PCR indices in ascending order (the order the TPM digests them). */
  pcrs(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.pcrSelect.length * 8; i++) {
      if (this.pcrSelect[i >> 3]! & (1 << (i & 7))) out.push(i);
    }
    return out;
  }

  static unmarshal(r: TpmReader): TpmsPcrSelection {
    const hash = r.u16("TPMS_PCR_SELECTION.hash");
    const size = r.u8("TPMS_PCR_SELECTION.sizeofSelect");
    if (size > LIMITS.pcrSelectBytes) {
      throw new TpmDecodeError(
        "OVERSIZE",
        "TPMS_PCR_SELECTION.sizeofSelect",
        `${size} exceeds ${LIMITS.pcrSelectBytes}`,
      );
    }
    return new TpmsPcrSelection(hash, r.bytesN(size, "TPMS_PCR_SELECTION.pcrSelect"));
  }

  marshal(w: TpmWriter): void {
    w.u16(this.hash).u8(this.pcrSelect.length).bytes(this.pcrSelect);
  }
}

/** TPML_PCR_SELECTION: selections over one or more banks. */
export class TpmlPcrSelection {
  constructor(readonly selections: readonly TpmsPcrSelection[]) {}

  static of(hash: number, pcrs: readonly number[]): TpmlPcrSelection {
    return new TpmlPcrSelection([TpmsPcrSelection.of(hash, pcrs)]);
  }

  /** Every (bank, pcr) pair selected, in the TPM's order: banks as listed, PCRs ascending. */
  entries(): { hash: number; pcr: number }[] {
    return this.selections.flatMap((s) => s.pcrs().map((pcr) => ({ hash: s.hash, pcr })));
  }

  static unmarshal(r: TpmReader): TpmlPcrSelection {
    const count = r.count("TPML_PCR_SELECTION", LIMITS.hashCount);
    const selections: TpmsPcrSelection[] = [];
    for (let i = 0; i < count; i++) selections.push(TpmsPcrSelection.unmarshal(r));
    return new TpmlPcrSelection(selections);
  }

  marshal(w: TpmWriter): void {
    w.u32(this.selections.length);
    for (const s of this.selections) s.marshal(w);
  }
}

/** TPML_DIGEST: up to eight digests (PCR_Read returns at most eight at a time). */
export class TpmlDigest {
  constructor(readonly digests: readonly Uint8Array[]) {}

  static unmarshal(r: TpmReader): TpmlDigest {
    const count = r.count("TPML_DIGEST", LIMITS.digestCount);
    const digests: Uint8Array[] = [];
    for (let i = 0; i < count; i++) digests.push(r.tpm2b("TPML_DIGEST.digests", LIMITS.digestBytes));
    return new TpmlDigest(digests);
  }

  marshal(w: TpmWriter): void {
    w.u32(this.digests.length);
    for (const d of this.digests) w.tpm2b(d);
  }
}
