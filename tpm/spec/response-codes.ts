/**
 * TPM_RC decoding (TPM 2.0 Part 2, §6.6). A response code is either
 * format 0 (bit 7 clear: a version-1 error, a warning, a vendor or TPM 1.2
 * code) or format 1 (bit 7 set: an error about one parameter, handle or
 * session, whose number is in bits 8..11).
 */

const RC_VER1 = 0x100;
const RC_FMT1 = 0x080;
const RC_WARN = 0x900;

const VER1: Readonly<Record<number, string>> = {
  0x000: "INITIALIZE",
  0x001: "FAILURE",
  0x003: "SEQUENCE",
  0x00b: "PRIVATE",
  0x019: "HMAC",
  0x020: "DISABLED",
  0x021: "EXCLUSIVE",
  0x024: "AUTH_TYPE",
  0x025: "AUTH_MISSING",
  0x026: "POLICY",
  0x027: "PCR",
  0x028: "PCR_CHANGED",
  0x02d: "UPGRADE",
  0x02e: "TOO_MANY_CONTEXTS",
  0x02f: "AUTH_UNAVAILABLE",
  0x030: "REBOOT",
  0x031: "UNBALANCED",
  0x042: "COMMAND_SIZE",
  0x043: "COMMAND_CODE",
  0x044: "AUTHSIZE",
  0x045: "AUTH_CONTEXT",
  0x046: "NV_RANGE",
  0x047: "NV_SIZE",
  0x048: "NV_LOCKED",
  0x049: "NV_AUTHORIZATION",
  0x04a: "NV_UNINITIALIZED",
  0x04b: "NV_SPACE",
  0x04c: "NV_DEFINED",
  0x050: "BAD_CONTEXT",
  0x051: "CPHASH",
  0x052: "PARENT",
  0x053: "NEEDS_TEST",
  0x054: "NO_RESULT",
  0x055: "SENSITIVE",
};

const FMT1: Readonly<Record<number, string>> = {
  0x01: "ASYMMETRIC",
  0x02: "ATTRIBUTES",
  0x03: "HASH",
  0x04: "VALUE",
  0x05: "HIERARCHY",
  0x07: "KEY_SIZE",
  0x08: "MGF",
  0x09: "MODE",
  0x0a: "TYPE",
  0x0b: "HANDLE",
  0x0c: "KDF",
  0x0d: "RANGE",
  0x0e: "AUTH_FAIL",
  0x0f: "NONCE",
  0x10: "PP",
  0x12: "SCHEME",
  0x15: "SIZE",
  0x16: "SYMMETRIC",
  0x17: "TAG",
  0x18: "SELECTOR",
  0x1a: "INSUFFICIENT",
  0x1b: "SIGNATURE",
  0x1c: "KEY",
  0x1d: "POLICY_FAIL",
  0x1f: "INTEGRITY",
  0x20: "TICKET",
  0x21: "RESERVED_BITS",
  0x22: "BAD_AUTH",
  0x23: "EXPIRED",
  0x24: "POLICY_CC",
  0x25: "BINDING",
  0x26: "CURVE",
  0x27: "ECC_POINT",
};

const WARN: Readonly<Record<number, string>> = {
  0x001: "CONTEXT_GAP",
  0x002: "OBJECT_MEMORY",
  0x003: "SESSION_MEMORY",
  0x004: "MEMORY",
  0x005: "SESSION_HANDLES",
  0x006: "OBJECT_HANDLES",
  0x007: "LOCALITY",
  0x008: "YIELDED",
  0x009: "CANCELED",
  0x00a: "TESTING",
  0x010: "REFERENCE_H0",
  0x011: "REFERENCE_H1",
  0x012: "REFERENCE_H2",
  0x013: "REFERENCE_H3",
  0x014: "REFERENCE_H4",
  0x015: "REFERENCE_H5",
  0x016: "REFERENCE_H6",
  0x018: "REFERENCE_S0",
  0x019: "REFERENCE_S1",
  0x01a: "REFERENCE_S2",
  0x01b: "REFERENCE_S3",
  0x01c: "REFERENCE_S4",
  0x01d: "REFERENCE_S5",
  0x01e: "REFERENCE_S6",
  0x020: "NV_RATE",
  0x021: "LOCKOUT",
  0x022: "RETRY",
  0x023: "NV_UNAVAILABLE",
  0x07f: "NOT_USED",
};

export type ResponseCodeKind = "success" | "error" | "warning" | "vendor" | "tpm12";

export interface DecodedResponseCode {
  readonly rc: number;
  /** The code without its parameter/handle/session number, e.g. 0x09d for 0x99d. */
  readonly baseCode: number;
  /** e.g. "TPM_RC_POLICY_FAIL"; "TPM_RC_UNKNOWN_0x..." for codes not in the table. */
  readonly name: string;
  readonly format: 0 | 1;
  readonly kind: ResponseCodeKind;
  readonly parameter?: number;
  readonly handle?: number;
  readonly session?: number;
  /** e.g. "TPM_RC_POLICY_FAIL (session 1)". */
  readonly text: string;
}

export function decodeResponseCode(rc: number): DecodedResponseCode {
  if (!Number.isInteger(rc) || rc < 0 || rc > 0xffffffff) throw new RangeError(`not a TPM_RC: ${rc}`);
  if (rc === 0)
    return { rc, baseCode: 0, name: "TPM_RC_SUCCESS", format: 0, kind: "success", text: "TPM_RC_SUCCESS" };
  const hex = `0x${rc.toString(16).padStart(3, "0")}`;
  if (rc & RC_FMT1) {
    const e = rc & 0x3f;
    const baseCode = RC_FMT1 + e;
    const name = FMT1[e] ? `TPM_RC_${FMT1[e]}` : `TPM_RC_UNKNOWN_FMT1_${hex}`;
    if (rc & 0x40) {
      const parameter = (rc >>> 8) & 0xf;
      return {
        rc,
        baseCode,
        name,
        format: 1,
        kind: "error",
        parameter,
        text: `${name} (parameter ${parameter})`,
      };
    }
    const n = (rc >>> 8) & 0x7;
    if (rc & 0x800)
      return { rc, baseCode, name, format: 1, kind: "error", session: n, text: `${name} (session ${n})` };
    // Handle number 0 means the error is not tied to a particular handle.
    const text = n === 0 ? name : `${name} (handle ${n})`;
    return { rc, baseCode, name, format: 1, kind: "error", handle: n, text };
  }
  if (!(rc & RC_VER1)) {
    const name = `TPM_RC_TPM12_${hex}`;
    return { rc, baseCode: rc, name, format: 0, kind: "tpm12", text: name };
  }
  if (rc & 0x400) {
    const name = `TPM_RC_VENDOR_${hex}`;
    return { rc, baseCode: rc, name, format: 0, kind: "vendor", text: name };
  }
  const e = rc & 0x7f;
  if (rc & 0x800) {
    const name = WARN[e] ? `TPM_RC_${WARN[e]}` : `TPM_RC_UNKNOWN_WARN_${hex}`;
    return { rc, baseCode: RC_WARN + e, name, format: 0, kind: "warning", text: name };
  }
  const name = VER1[e] ? `TPM_RC_${VER1[e]}` : `TPM_RC_UNKNOWN_${hex}`;
  return { rc, baseCode: RC_VER1 + e, name, format: 0, kind: "error", text: name };
}

/** The base codes callers match on (compare with TpmError.baseCode, never with message text). */
export const TPM_RC = {
  SUCCESS: 0x000,
  INITIALIZE: RC_VER1 + 0x000,
  FAILURE: RC_VER1 + 0x001,
  AUTH_MISSING: RC_VER1 + 0x025,
  POLICY: RC_VER1 + 0x026,
  PCR_CHANGED: RC_VER1 + 0x028,
  NV_UNINITIALIZED: RC_VER1 + 0x04a,
  VALUE: RC_FMT1 + 0x04,
  HANDLE: RC_FMT1 + 0x0b,
  AUTH_FAIL: RC_FMT1 + 0x0e,
  SIZE: RC_FMT1 + 0x15,
  POLICY_FAIL: RC_FMT1 + 0x1d,
  INTEGRITY: RC_FMT1 + 0x1f,
  BAD_AUTH: RC_FMT1 + 0x22,
  OBJECT_MEMORY: RC_WARN + 0x002,
  SESSION_MEMORY: RC_WARN + 0x003,
  RETRY: RC_WARN + 0x022,
  YIELDED: RC_WARN + 0x008,
  TESTING: RC_WARN + 0x00a,
  LOCKOUT: RC_WARN + 0x021,
} as const;
