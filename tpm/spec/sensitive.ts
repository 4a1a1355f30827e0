import type { TpmReader } from "../marshal/reader.js";
import type { TpmWriter } from "../marshal/writer.js";
import { LIMITS } from "./limits.js";

/** TPMS_SENSITIVE_CREATE: the auth value and (for sealed objects) the data of a new object. */
export class TpmsSensitiveCreate {
  constructor(
    readonly userAuth: Uint8Array = new Uint8Array(0),
    readonly data: Uint8Array = new Uint8Array(0),
  ) {}

  /** Logs and error reports show sizes only: userAuth and data are secrets (a sealed secret is the data). */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `TpmsSensitiveCreate(userAuth: ${this.userAuth.length} bytes, data: ${this.data.length} bytes)`;
  }

  toJSON(): { userAuthBytes: number; dataBytes: number } {
    return { userAuthBytes: this.userAuth.length, dataBytes: this.data.length };
  }

  static unmarshal(r: TpmReader): TpmsSensitiveCreate {
    const userAuth = r.tpm2b("TPMS_SENSITIVE_CREATE.userAuth", LIMITS.digestBytes);
    return new TpmsSensitiveCreate(
      userAuth,
      r.tpm2b("TPMS_SENSITIVE_CREATE.data", LIMITS.sensitiveDataBytes),
    );
  }

  marshal(w: TpmWriter): void {
    w.tpm2b(this.userAuth).tpm2b(this.data);
  }
}

/** TPM2B_SENSITIVE_CREATE; undefined stands for the empty TPM2B (which the TPM refuses as input). */
export class Tpm2bSensitiveCreate {
  constructor(readonly sensitive: TpmsSensitiveCreate | undefined) {}

  static unmarshal(r: TpmReader): Tpm2bSensitiveCreate {
    return new Tpm2bSensitiveCreate(
      r.sized("TPM2B_SENSITIVE_CREATE", LIMITS.privateBytes, TpmsSensitiveCreate.unmarshal),
    );
  }

  marshal(w: TpmWriter): void {
    const s = this.sensitive;
    w.sized(s === undefined ? undefined : (inner) => s.marshal(inner));
  }
}

/**
 * TPMT_SENSITIVE: the private area. The TPMU_SENSITIVE_COMPOSITE members
 * (RSA prime, ECC scalar, keyed-hash bits, symmetric key) are all TPM2Bs.
 */
export class TpmtSensitive {
  constructor(
    readonly sensitiveType: number,
    readonly authValue: Uint8Array,
    readonly seedValue: Uint8Array,
    readonly sensitive: Uint8Array,
  ) {}

  /** Logs and error reports show the type and sizes only: the private area is key material. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `TpmtSensitive(type 0x${this.sensitiveType.toString(16)}, ${this.sensitive.length} secret bytes)`;
  }

  toJSON(): { sensitiveType: number } {
    return { sensitiveType: this.sensitiveType };
  }

  static unmarshal(r: TpmReader): TpmtSensitive {
    const sensitiveType = r.u16("TPMT_SENSITIVE.sensitiveType");
    const authValue = r.tpm2b("TPMT_SENSITIVE.authValue", LIMITS.digestBytes);
    const seedValue = r.tpm2b("TPMT_SENSITIVE.seedValue", LIMITS.digestBytes);
    return new TpmtSensitive(
      sensitiveType,
      authValue,
      seedValue,
      r.tpm2b("TPMT_SENSITIVE.sensitive", LIMITS.rsaKeyBytes),
    );
  }

  marshal(w: TpmWriter): void {
    w.u16(this.sensitiveType).tpm2b(this.authValue).tpm2b(this.seedValue).tpm2b(this.sensitive);
  }
}
