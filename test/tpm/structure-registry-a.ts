/** Every TPM structure codec of tpm/spec, by its Part 2 name, for round-trip and fuzz tests. */
import type { TpmReader } from "../../tpm/marshal/reader.js";
import type { TpmWriter } from "../../tpm/marshal/writer.js";
import { TpmsAttest, TpmsClockInfo } from "../../tpm/spec/attest.js";
import { TpmlDigestValues, TpmsEccPoint, TpmtHa, TpmtTkCreation } from "../../tpm/spec/basic.js";
import { TpmsCapabilityData } from "../../tpm/spec/capability.js";
import { Tpm2bCreationData, TpmsCreationData } from "../../tpm/spec/creation.js";
import { Tpm2bIdObject, TpmsIdObject } from "../../tpm/spec/credential.js";
import { Tpm2bNvPublic, TpmsNvPublic } from "../../tpm/spec/nv.js";
import { TpmlDigest, TpmlPcrSelection, TpmsPcrSelection } from "../../tpm/spec/pcr.js";
import { Tpm2bPublic, TpmtPublic } from "../../tpm/spec/public.js";
import { TpmtScheme, TpmtSymDef } from "../../tpm/spec/schemes.js";
import { Tpm2bSensitiveCreate, TpmsSensitiveCreate, TpmtSensitive } from "../../tpm/spec/sensitive.js";
import { TpmtSignature } from "../../tpm/spec/signature.js";

export interface Codec {
  decode(r: TpmReader): { marshal(w: TpmWriter): void };
}

export const CODECS: Readonly<Record<string, Codec>> = {
  TPMT_HA: { decode: TpmtHa.unmarshal },
  TPML_DIGEST_VALUES: { decode: TpmlDigestValues.unmarshal },
  TPMT_TK_CREATION: { decode: TpmtTkCreation.unmarshal },
  TPMS_ECC_POINT: { decode: TpmsEccPoint.unmarshal },
  TPMS_PCR_SELECTION: { decode: TpmsPcrSelection.unmarshal },
  TPML_PCR_SELECTION: { decode: TpmlPcrSelection.unmarshal },
  TPML_DIGEST: { decode: TpmlDigest.unmarshal },
  TPMT_SYM_DEF: { decode: (r) => TpmtSymDef.unmarshal(r, true) },
  TPMT_SYM_DEF_OBJECT: { decode: (r) => TpmtSymDef.unmarshal(r, false) },
  TPMT_RSA_SCHEME: { decode: (r) => TpmtScheme.unmarshal(r, "RSA") },
  TPMT_ECC_SCHEME: { decode: (r) => TpmtScheme.unmarshal(r, "ECC") },
  TPMT_KEYEDHASH_SCHEME: { decode: (r) => TpmtScheme.unmarshal(r, "KEYEDHASH") },
  TPMT_KDF_SCHEME: { decode: (r) => TpmtScheme.unmarshal(r, "KDF") },
  TPMT_SIG_SCHEME: { decode: (r) => TpmtScheme.unmarshal(r, "SIG") },
  TPMT_PUBLIC: { decode: TpmtPublic.unmarshal },
  TPM2B_PUBLIC: { decode: Tpm2bPublic.unmarshal },
  TPMS_CLOCK_INFO: { decode: TpmsClockInfo.unmarshal },
  TPMS_ATTEST: { decode: TpmsAttest.unmarshal },
  TPMT_SIGNATURE: { decode: TpmtSignature.unmarshal },
  TPMS_SENSITIVE_CREATE: { decode: TpmsSensitiveCreate.unmarshal },
  TPM2B_SENSITIVE_CREATE: { decode: Tpm2bSensitiveCreate.unmarshal },
  TPMT_SENSITIVE: { decode: TpmtSensitive.unmarshal },
  TPMS_NV_PUBLIC: { decode: TpmsNvPublic.unmarshal },
  TPM2B_NV_PUBLIC: { decode: Tpm2bNvPublic.unmarshal },
  TPMS_CREATION_DATA: { decode: TpmsCreationData.unmarshal },
  TPM2B_CREATION_DATA: { decode: Tpm2bCreationData.unmarshal },
  TPMS_ID_OBJECT: { decode: TpmsIdObject.unmarshal },
  TPM2B_ID_OBJECT: { decode: Tpm2bIdObject.unmarshal },
  TPMS_CAPABILITY_DATA: { decode: TpmsCapabilityData.unmarshal },
};

/** Structures no TPM puts on the wire in clear (only inside encrypted blobs): tested on built samples. */
export const NOT_ON_THE_WIRE: ReadonlySet<string> = new Set(["TPMT_SENSITIVE"]);
