import { TpmDecodeError, TpmUnionTagError } from "../marshal/decode-error.js";
import type { TpmReader } from "../marshal/reader.js";
import type { TpmWriter } from "../marshal/writer.js";
import { TPM_ST } from "./constants.js";
import { LIMITS } from "./limits.js";
import { TpmlPcrSelection } from "./pcr.js";

/** TPMS_CLOCK_INFO: clock (ms), reset and restart counts, and whether the clock is "safe". */
export class TpmsClockInfo {
  constructor(
    readonly clock: bigint,
    readonly resetCount: number,
    readonly restartCount: number,
    readonly safe: boolean,
  ) {}

  static unmarshal(r: TpmReader): TpmsClockInfo {
    const clock = r.u64("TPMS_CLOCK_INFO.clock");
    const resetCount = r.u32("TPMS_CLOCK_INFO.resetCount");
    const restartCount = r.u32("TPMS_CLOCK_INFO.restartCount");
    return new TpmsClockInfo(clock, resetCount, restartCount, r.bool("TPMS_CLOCK_INFO.safe"));
  }

  marshal(w: TpmWriter): void {
    w.u64(this.clock).u32(this.resetCount).u32(this.restartCount).bool(this.safe);
  }
}

/** TPMS_QUOTE_INFO: the PCRs quoted and the digest of their values. */
export interface TpmsQuoteInfo {
  readonly type: typeof TPM_ST.ATTEST_QUOTE;
  readonly pcrSelect: TpmlPcrSelection;
  readonly pcrDigest: Uint8Array;
}
export interface TpmsCertifyInfo {
  readonly type: typeof TPM_ST.ATTEST_CERTIFY;
  readonly name: Uint8Array;
  readonly qualifiedName: Uint8Array;
}
export interface TpmsCreationInfo {
  readonly type: typeof TPM_ST.ATTEST_CREATION;
  readonly objectName: Uint8Array;
  readonly creationHash: Uint8Array;
}
export interface TpmsCommandAuditInfo {
  readonly type: typeof TPM_ST.ATTEST_COMMAND_AUDIT;
  readonly auditCounter: bigint;
  readonly digestAlg: number;
  readonly auditDigest: Uint8Array;
  readonly commandDigest: Uint8Array;
}
export interface TpmsSessionAuditInfo {
  readonly type: typeof TPM_ST.ATTEST_SESSION_AUDIT;
  readonly exclusiveSession: boolean;
  readonly sessionDigest: Uint8Array;
}
export interface TpmsTimeAttestInfo {
  readonly type: typeof TPM_ST.ATTEST_TIME;
  readonly time: bigint;
  readonly clockInfo: TpmsClockInfo;
  readonly firmwareVersion: bigint;
}
export interface TpmsNvCertifyInfo {
  readonly type: typeof TPM_ST.ATTEST_NV;
  readonly indexName: Uint8Array;
  readonly offset: number;
  readonly nvContents: Uint8Array;
}
export interface TpmsNvDigestCertifyInfo {
  readonly type: typeof TPM_ST.ATTEST_NV_DIGEST;
  readonly indexName: Uint8Array;
  readonly nvDigest: Uint8Array;
}

/** TPMU_ATTEST, tagged by TPMS_ATTEST.type. */
export type TpmuAttest =
  | TpmsQuoteInfo
  | TpmsCertifyInfo
  | TpmsCreationInfo
  | TpmsCommandAuditInfo
  | TpmsSessionAuditInfo
  | TpmsTimeAttestInfo
  | TpmsNvCertifyInfo
  | TpmsNvDigestCertifyInfo;

/**
 * TPMS_ATTEST: what the TPM signs in a quote (and in certify, time, audit...).
 * The magic is decoded as is, not checked: a verifier must check it and
 * report a named failure, so decoding must not hide a wrong value.
 */
export class TpmsAttest {
  constructor(
    readonly magic: number,
    readonly qualifiedSigner: Uint8Array,
    readonly extraData: Uint8Array,
    readonly clockInfo: TpmsClockInfo,
    readonly firmwareVersion: bigint,
    readonly attested: TpmuAttest,
  ) {}

  get type(): number {
    return this.attested.type;
  }

  /** The quote information; throws TpmUnionTagError unless this is a quote. */
  quote(): TpmsQuoteInfo {
    if (this.attested.type !== TPM_ST.ATTEST_QUOTE) {
      throw new TpmUnionTagError("TPMU_ATTEST", TPM_ST.ATTEST_QUOTE, this.attested.type);
    }
    return this.attested;
  }

  certify(): TpmsCertifyInfo {
    if (this.attested.type !== TPM_ST.ATTEST_CERTIFY) {
      throw new TpmUnionTagError("TPMU_ATTEST", TPM_ST.ATTEST_CERTIFY, this.attested.type);
    }
    return this.attested;
  }

  creation(): TpmsCreationInfo {
    if (this.attested.type !== TPM_ST.ATTEST_CREATION) {
      throw new TpmUnionTagError("TPMU_ATTEST", TPM_ST.ATTEST_CREATION, this.attested.type);
    }
    return this.attested;
  }

  static unmarshal(r: TpmReader): TpmsAttest {
    const magic = r.u32("TPMS_ATTEST.magic");
    const type = r.u16("TPMS_ATTEST.type");
    const qualifiedSigner = r.tpm2b("TPMS_ATTEST.qualifiedSigner", LIMITS.nameBytes);
    const extraData = r.tpm2b("TPMS_ATTEST.extraData", LIMITS.dataBytes);
    const clockInfo = TpmsClockInfo.unmarshal(r);
    const firmwareVersion = r.u64("TPMS_ATTEST.firmwareVersion");
    const attested = unmarshalAttested(r, type);
    return new TpmsAttest(magic, qualifiedSigner, extraData, clockInfo, firmwareVersion, attested);
  }

  marshal(w: TpmWriter): void {
    w.u32(this.magic).u16(this.attested.type).tpm2b(this.qualifiedSigner).tpm2b(this.extraData);
    this.clockInfo.marshal(w);
    w.u64(this.firmwareVersion);
    const a = this.attested;
    switch (a.type) {
      case TPM_ST.ATTEST_QUOTE:
        a.pcrSelect.marshal(w);
        w.tpm2b(a.pcrDigest);
        break;
      case TPM_ST.ATTEST_CERTIFY:
        w.tpm2b(a.name).tpm2b(a.qualifiedName);
        break;
      case TPM_ST.ATTEST_CREATION:
        w.tpm2b(a.objectName).tpm2b(a.creationHash);
        break;
      case TPM_ST.ATTEST_COMMAND_AUDIT:
        w.u64(a.auditCounter).u16(a.digestAlg).tpm2b(a.auditDigest).tpm2b(a.commandDigest);
        break;
      case TPM_ST.ATTEST_SESSION_AUDIT:
        w.bool(a.exclusiveSession).tpm2b(a.sessionDigest);
        break;
      case TPM_ST.ATTEST_TIME:
        w.u64(a.time);
        a.clockInfo.marshal(w);
        w.u64(a.firmwareVersion);
        break;
      case TPM_ST.ATTEST_NV:
        w.tpm2b(a.indexName).u16(a.offset).tpm2b(a.nvContents);
        break;
      case TPM_ST.ATTEST_NV_DIGEST:
        w.tpm2b(a.indexName).tpm2b(a.nvDigest);
        break;
    }
  }
}

function unmarshalAttested(r: TpmReader, type: number): TpmuAttest {
  const D = LIMITS.digestBytes;
  const N = LIMITS.nameBytes;
  switch (type) {
    case TPM_ST.ATTEST_QUOTE: {
      const pcrSelect = TpmlPcrSelection.unmarshal(r);
      return { type, pcrSelect, pcrDigest: r.tpm2b("TPMS_QUOTE_INFO.pcrDigest", D) };
    }
    case TPM_ST.ATTEST_CERTIFY: {
      const name = r.tpm2b("TPMS_CERTIFY_INFO.name", N);
      return { type, name, qualifiedName: r.tpm2b("TPMS_CERTIFY_INFO.qualifiedName", N) };
    }
    case TPM_ST.ATTEST_CREATION: {
      const objectName = r.tpm2b("TPMS_CREATION_INFO.objectName", N);
      return { type, objectName, creationHash: r.tpm2b("TPMS_CREATION_INFO.creationHash", D) };
    }
    case TPM_ST.ATTEST_COMMAND_AUDIT: {
      const auditCounter = r.u64("TPMS_COMMAND_AUDIT_INFO.auditCounter");
      const digestAlg = r.u16("TPMS_COMMAND_AUDIT_INFO.digestAlg");
      const auditDigest = r.tpm2b("TPMS_COMMAND_AUDIT_INFO.auditDigest", D);
      const commandDigest = r.tpm2b("TPMS_COMMAND_AUDIT_INFO.commandDigest", D);
      return { type, auditCounter, digestAlg, auditDigest, commandDigest };
    }
    case TPM_ST.ATTEST_SESSION_AUDIT: {
      const exclusiveSession = r.bool("TPMS_SESSION_AUDIT_INFO.exclusiveSession");
      return { type, exclusiveSession, sessionDigest: r.tpm2b("TPMS_SESSION_AUDIT_INFO.sessionDigest", D) };
    }
    case TPM_ST.ATTEST_TIME: {
      const time = r.u64("TPMS_TIME_INFO.time");
      const clockInfo = TpmsClockInfo.unmarshal(r);
      return { type, time, clockInfo, firmwareVersion: r.u64("TPMS_TIME_ATTEST_INFO.firmwareVersion") };
    }
    case TPM_ST.ATTEST_NV: {
      const indexName = r.tpm2b("TPMS_NV_CERTIFY_INFO.indexName", N);
      const offset = r.u16("TPMS_NV_CERTIFY_INFO.offset");
      return {
        type,
        indexName,
        offset,
        nvContents: r.tpm2b("TPMS_NV_CERTIFY_INFO.nvContents", LIMITS.nvBufferBytes),
      };
    }
    case TPM_ST.ATTEST_NV_DIGEST: {
      const indexName = r.tpm2b("TPMS_NV_DIGEST_CERTIFY_INFO.indexName", N);
      return { type, indexName, nvDigest: r.tpm2b("TPMS_NV_DIGEST_CERTIFY_INFO.nvDigest", D) };
    }
    default:
      throw new TpmDecodeError("UNKNOWN_SELECTOR", "TPMS_ATTEST.type", `0x${type.toString(16)}`);
  }
}
