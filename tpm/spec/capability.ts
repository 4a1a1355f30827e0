import { TpmDecodeError } from "../marshal/decode-error.js";
import type { TpmReader } from "../marshal/reader.js";
import type { TpmWriter } from "../marshal/writer.js";
import { TpmtHa } from "./basic.js";
import { TPM_CAP } from "./constants.js";
import { LIMITS } from "./limits.js";
import { TpmlPcrSelection } from "./pcr.js";

const C = TPM_CAP;

export interface TpmsAlgProperty {
  readonly alg: number;
  readonly algProperties: number;
}
export interface TpmsTaggedProperty {
  readonly property: number;
  readonly value: number;
}
export interface TpmsTaggedPcrSelect {
  readonly tag: number;
  readonly pcrSelect: Uint8Array;
}
export interface TpmsTaggedPolicy {
  readonly handle: number;
  readonly policyHash: TpmtHa;
}
export interface TpmsActData {
  readonly handle: number;
  readonly timeout: number;
  readonly attributes: number;
}

/** TPMU_CAPABILITIES, tagged by the capability. */
export type TpmuCapabilities =
  | { readonly capability: typeof C.ALGS; readonly algorithms: readonly TpmsAlgProperty[] }
  | { readonly capability: typeof C.HANDLES; readonly handles: readonly number[] }
  | { readonly capability: typeof C.COMMANDS; readonly commandAttributes: readonly number[] }
  | {
      readonly capability: typeof C.PP_COMMANDS | typeof C.AUDIT_COMMANDS;
      readonly commandCodes: readonly number[];
    }
  | { readonly capability: typeof C.PCRS; readonly assignedPcr: TpmlPcrSelection }
  | { readonly capability: typeof C.TPM_PROPERTIES; readonly tpmProperties: readonly TpmsTaggedProperty[] }
  | { readonly capability: typeof C.PCR_PROPERTIES; readonly pcrProperties: readonly TpmsTaggedPcrSelect[] }
  | { readonly capability: typeof C.ECC_CURVES; readonly eccCurves: readonly number[] }
  | { readonly capability: typeof C.AUTH_POLICIES; readonly authPolicies: readonly TpmsTaggedPolicy[] }
  | { readonly capability: typeof C.ACT; readonly actData: readonly TpmsActData[] };

function list<T>(r: TpmReader, what: string, item: (r: TpmReader) => T): T[] {
  const count = r.count(what, LIMITS.listCount);
  const out: T[] = [];
  for (let i = 0; i < count; i++) out.push(item(r));
  return out;
}

function writeList<T>(w: TpmWriter, items: readonly T[], item: (w: TpmWriter, v: T) => void): void {
  w.u32(items.length);
  for (const v of items) item(w, v);
}

/** TPMS_CAPABILITY_DATA: the answer of GetCapability. */
export class TpmsCapabilityData {
  constructor(readonly data: TpmuCapabilities) {}

  static unmarshal(r: TpmReader): TpmsCapabilityData {
    const capability = r.u32("TPMS_CAPABILITY_DATA.capability");
    switch (capability) {
      case C.ALGS:
        return new TpmsCapabilityData({
          capability,
          algorithms: list(r, "TPML_ALG_PROPERTY", (r) => ({
            alg: r.u16("alg"),
            algProperties: r.u32("algProperties"),
          })),
        });
      case C.HANDLES:
        return new TpmsCapabilityData({
          capability,
          handles: list(r, "TPML_HANDLE", (r) => r.u32("handle")),
        });
      case C.COMMANDS:
        return new TpmsCapabilityData({
          capability,
          commandAttributes: list(r, "TPML_CCA", (r) => r.u32("TPMA_CC")),
        });
      case C.PP_COMMANDS:
      case C.AUDIT_COMMANDS:
        return new TpmsCapabilityData({
          capability,
          commandCodes: list(r, "TPML_CC", (r) => r.u32("TPM_CC")),
        });
      case C.PCRS:
        return new TpmsCapabilityData({ capability, assignedPcr: TpmlPcrSelection.unmarshal(r) });
      case C.TPM_PROPERTIES:
        return new TpmsCapabilityData({
          capability,
          tpmProperties: list(r, "TPML_TAGGED_TPM_PROPERTY", (r) => ({
            property: r.u32("property"),
            value: r.u32("value"),
          })),
        });
      case C.PCR_PROPERTIES:
        return new TpmsCapabilityData({
          capability,
          pcrProperties: list(r, "TPML_TAGGED_PCR_PROPERTY", (r) => {
            const tag = r.u32("TPMS_TAGGED_PCR_SELECT.tag");
            const size = r.u8("TPMS_TAGGED_PCR_SELECT.sizeofSelect");
            if (size > LIMITS.pcrSelectBytes)
              throw new TpmDecodeError("OVERSIZE", "TPMS_TAGGED_PCR_SELECT", `${size}`);
            return { tag, pcrSelect: r.bytesN(size, "TPMS_TAGGED_PCR_SELECT.pcrSelect") };
          }),
        });
      case C.ECC_CURVES:
        return new TpmsCapabilityData({
          capability,
          eccCurves: list(r, "TPML_ECC_CURVE", (r) => r.u16("TPM_ECC_CURVE")),
        });
      case C.AUTH_POLICIES:
        return new TpmsCapabilityData({
          capability,
          authPolicies: list(r, "TPML_TAGGED_POLICY", (r) => ({
            handle: r.u32("handle"),
            policyHash: TpmtHa.unmarshal(r),
          })),
        });
      case C.ACT:
        return new TpmsCapabilityData({
          capability,
          actData: list(r, "TPML_ACT_DATA", (r) => ({
            handle: r.u32("handle"),
            timeout: r.u32("timeout"),
            attributes: r.u32("attributes"),
          })),
        });
      default:
        throw new TpmDecodeError(
          "UNKNOWN_SELECTOR",
          "TPMS_CAPABILITY_DATA.capability",
          `0x${capability.toString(16)}`,
        );
    }
  }

  marshal(w: TpmWriter): void {
    const d = this.data;
    w.u32(d.capability);
    switch (d.capability) {
      case C.ALGS:
        return writeList(w, d.algorithms, (w, v) => w.u16(v.alg).u32(v.algProperties));
      case C.HANDLES:
        return writeList(w, d.handles, (w, v) => w.u32(v));
      case C.COMMANDS:
        return writeList(w, d.commandAttributes, (w, v) => w.u32(v));
      case C.PP_COMMANDS:
      case C.AUDIT_COMMANDS:
        return writeList(w, d.commandCodes, (w, v) => w.u32(v));
      case C.PCRS:
        return d.assignedPcr.marshal(w);
      case C.TPM_PROPERTIES:
        return writeList(w, d.tpmProperties, (w, v) => w.u32(v.property).u32(v.value));
      case C.PCR_PROPERTIES:
        return writeList(w, d.pcrProperties, (w, v) =>
          w.u32(v.tag).u8(v.pcrSelect.length).bytes(v.pcrSelect),
        );
      case C.ECC_CURVES:
        return writeList(w, d.eccCurves, (w, v) => w.u16(v));
      case C.AUTH_POLICIES:
        return writeList(w, d.authPolicies, (w, v) => {
          w.u32(v.handle);
          v.policyHash.marshal(w);
        });
      case C.ACT:
        return writeList(w, d.actData, (w, v) => w.u32(v.handle).u32(v.timeout).u32(v.attributes));
    }
  }
}
