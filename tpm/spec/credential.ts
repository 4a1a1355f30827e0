import type { TpmReader } from "../marshal/reader.js";
import type { TpmWriter } from "../marshal/writer.js";
import { LIMITS } from "./limits.js";

/**
 * TPMS_ID_OBJECT, the contents of TPM2B_ID_OBJECT (MakeCredential output):
 * an integrity HMAC, then the encrypted TPM2B_DIGEST credential. The
 * encrypted part is opaque bytes that run to the end of the TPM2B.
 */
export class TpmsIdObject {
  constructor(
    readonly integrityHmac: Uint8Array,
    readonly encIdentity: Uint8Array,
  ) {}

  static unmarshal(r: TpmReader): TpmsIdObject {
    const integrityHmac = r.tpm2b("TPMS_ID_OBJECT.integrityHMAC", LIMITS.digestBytes);
    return new TpmsIdObject(integrityHmac, r.rest());
  }

  marshal(w: TpmWriter): void {
    w.tpm2b(this.integrityHmac).bytes(this.encIdentity);
  }
}

/** TPM2B_ID_OBJECT. */
export class Tpm2bIdObject {
  /** undefined stands for the empty TPM2B. */
  constructor(readonly credential: TpmsIdObject | undefined) {}

  static unmarshal(r: TpmReader): Tpm2bIdObject {
    return new Tpm2bIdObject(r.sized("TPM2B_ID_OBJECT", LIMITS.idObjectBytes, TpmsIdObject.unmarshal));
  }

  marshal(w: TpmWriter): void {
    const c = this.credential;
    w.sized(c === undefined ? undefined : (inner) => c.marshal(inner));
  }
}
