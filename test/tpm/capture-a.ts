/**
 * Cuts the structures out of recorded TPM command/response bytes, so the
 * round-trip test runs on exactly what crossed the wire. Each structure is
 * located by walking the command's parameter layout (TPM 2.0 Part 3).
 */
import { TpmReader } from "../../tpm/marshal/reader.js";
import { TPM_ALG_ID, TPM_CC, TPM_ST } from "../../tpm/spec/constants.js";
import type { RecordedExchange } from "../../tpm/transport/recording-transport.js";
import { CODECS } from "./structure-registry-a.js";

export type Samples = Map<string, Uint8Array[]>;

class Cutter {
  constructor(
    private readonly bytes: Uint8Array,
    private readonly r: TpmReader,
    private readonly samples: Samples,
  ) {}

  /** Decodes one structure at the cursor and keeps its exact bytes as a sample of `name`. */
  take(name: string): Uint8Array {
    const start = this.r.position;
    CODECS[name]!.decode(this.r);
    const slice = this.bytes.slice(start, this.r.position);
    const list = this.samples.get(name) ?? [];
    list.push(slice);
    this.samples.set(name, list);
    return slice;
  }

  /** A TPM2B wrapper: keeps it, and its contents as a sample of `inner`; returns the contents. */
  take2b(name: string, inner: string): Uint8Array {
    const whole = this.take(name);
    const body = whole.slice(2);
    if (body.length > 0) add(this.samples, inner, body);
    return body;
  }

  skip2b(): void {
    this.r.tpm2b("skip", 1 << 16);
  }
}

function add(samples: Samples, name: string, bytes: Uint8Array): void {
  const list = samples.get(name) ?? [];
  list.push(bytes);
  samples.set(name, list);
}

/** The nested structures of a TPMT_PUBLIC: symmetric and scheme definitions, ECC point. */
function cutPublic(area: Uint8Array, samples: Samples): void {
  const r = new TpmReader(area);
  const c = new Cutter(area, r, samples);
  const type = r.u16("type");
  r.u16("nameAlg");
  r.u32("attributes");
  c.skip2b();
  if (type === TPM_ALG_ID.RSA) {
    c.take("TPMT_SYM_DEF_OBJECT");
    c.take("TPMT_RSA_SCHEME");
  } else if (type === TPM_ALG_ID.ECC) {
    c.take("TPMT_SYM_DEF_OBJECT");
    c.take("TPMT_ECC_SCHEME");
    r.u16("curve");
    c.take("TPMT_KDF_SCHEME");
    c.take("TPMS_ECC_POINT");
  } else if (type === TPM_ALG_ID.KEYEDHASH) {
    c.take("TPMT_KEYEDHASH_SCHEME");
  }
}

function cutCreationData(body: Uint8Array, samples: Samples): void {
  new Cutter(body, new TpmReader(body), samples).take("TPML_PCR_SELECTION");
}

function cutAttest(body: Uint8Array, samples: Samples): void {
  const r = new TpmReader(body);
  const c = new Cutter(body, r, samples);
  r.u32("magic");
  const type = r.u16("type");
  c.skip2b();
  c.skip2b();
  c.take("TPMS_CLOCK_INFO");
  r.u64("firmwareVersion");
  if (type === TPM_ST.ATTEST_QUOTE) c.take("TPML_PCR_SELECTION");
}

function handleCount(cc: number, side: "command" | "response"): number {
  if (side === "response")
    return cc === TPM_CC.CreatePrimary || cc === TPM_CC.Load || cc === TPM_CC.StartAuthSession ? 1 : 0;
  switch (cc) {
    case TPM_CC.StartAuthSession:
    case TPM_CC.ActivateCredential:
    case TPM_CC.PolicySecret:
    case TPM_CC.NV_Read:
      return 2;
    case TPM_CC.CreatePrimary:
    case TPM_CC.Create:
    case TPM_CC.Load:
    case TPM_CC.Quote:
    case TPM_CC.PCR_Extend:
    case TPM_CC.ReadPublic:
    case TPM_CC.Unseal:
    case TPM_CC.NV_ReadPublic:
    case TPM_CC.PolicyPCR:
    case TPM_CC.PolicyGetDigest:
      return 1;
    default:
      return 0;
  }
}

/** Positions a reader at the parameter area of a command or response. */
function paramsOf(bytes: Uint8Array, cc: number, side: "command" | "response"): Uint8Array {
  const r = new TpmReader(bytes);
  const tag = r.u16("tag");
  const size = r.u32("size");
  r.u32(side === "command" ? "commandCode" : "responseCode");
  for (let i = 0; i < handleCount(cc, side); i++) r.u32("handle");
  if (tag === TPM_ST.SESSIONS) {
    const n = r.u32("size");
    if (side === "command") {
      r.bytesN(n, "auth");
      return bytes.slice(r.position, size);
    }
    return r.bytesN(n, "params");
  }
  return bytes.slice(r.position, size);
}

/** Collects structure samples from successful exchanges (commands and responses). */
export function collectSamples(exchanges: readonly RecordedExchange[]): Samples {
  const samples: Samples = new Map();
  for (const e of exchanges) {
    if (e.response === undefined) continue;
    const cc = new DataView(e.command.buffer, e.command.byteOffset).getUint32(6);
    const rc = new DataView(e.response.buffer, e.response.byteOffset).getUint32(6);
    if (rc !== 0) continue;
    cutCommand(cc, paramsOf(e.command, cc, "command"), samples);
    cutResponse(cc, paramsOf(e.response, cc, "response"), samples);
  }
  return samples;
}

function cutCommand(cc: number, params: Uint8Array, samples: Samples): void {
  const r = new TpmReader(params);
  const c = new Cutter(params, r, samples);
  switch (cc) {
    case TPM_CC.CreatePrimary:
    case TPM_CC.Create: {
      c.take2b("TPM2B_SENSITIVE_CREATE", "TPMS_SENSITIVE_CREATE");
      cutPublic(c.take2b("TPM2B_PUBLIC", "TPMT_PUBLIC"), samples);
      c.skip2b();
      c.take("TPML_PCR_SELECTION");
      break;
    }
    case TPM_CC.Load:
      c.skip2b();
      cutPublic(c.take2b("TPM2B_PUBLIC", "TPMT_PUBLIC"), samples);
      break;
    case TPM_CC.PCR_Read:
      for (const s of cutList(c.take("TPML_PCR_SELECTION"))) add(samples, "TPMS_PCR_SELECTION", s);
      break;
    case TPM_CC.PCR_Extend: {
      const list = c.take("TPML_DIGEST_VALUES");
      const lr = new TpmReader(list);
      const lc = new Cutter(list, lr, samples);
      const n = lr.u32("count");
      for (let i = 0; i < n; i++) lc.take("TPMT_HA");
      break;
    }
    case TPM_CC.StartAuthSession: {
      c.skip2b();
      const salt = r.tpm2b("salt", 1024);
      // An ECC salt is a TPMS_ECC_POINT; an RSA salt is opaque ciphertext.
      if (salt.length > 0 && salt[0] === 0 && salt[1]! <= 66) {
        new Cutter(salt, new TpmReader(salt), samples).take("TPMS_ECC_POINT");
      }
      r.u8("sessionType");
      c.take("TPMT_SYM_DEF");
      break;
    }
    case TPM_CC.Quote:
      c.skip2b();
      c.take("TPMT_SIG_SCHEME");
      c.take("TPML_PCR_SELECTION");
      break;
    case TPM_CC.ActivateCredential:
      c.take2b("TPM2B_ID_OBJECT", "TPMS_ID_OBJECT");
      break;
    case TPM_CC.PolicyPCR:
      c.skip2b();
      c.take("TPML_PCR_SELECTION");
      break;
  }
}

/** The TPMS_PCR_SELECTION entries of a marshalled TPML_PCR_SELECTION. */
function cutList(list: Uint8Array): Uint8Array[] {
  const r = new TpmReader(list);
  const n = r.u32("count");
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const start = r.position;
    r.u16("hash");
    r.bytesN(r.u8("size"), "select");
    out.push(list.slice(start, r.position));
  }
  return out;
}

function cutResponse(cc: number, params: Uint8Array, samples: Samples): void {
  const r = new TpmReader(params);
  const c = new Cutter(params, r, samples);
  switch (cc) {
    case TPM_CC.CreatePrimary:
    case TPM_CC.Create: {
      if (cc === TPM_CC.Create) c.skip2b();
      cutPublic(c.take2b("TPM2B_PUBLIC", "TPMT_PUBLIC"), samples);
      cutCreationData(c.take2b("TPM2B_CREATION_DATA", "TPMS_CREATION_DATA"), samples);
      c.skip2b();
      c.take("TPMT_TK_CREATION");
      break;
    }
    case TPM_CC.ReadPublic:
      cutPublic(c.take2b("TPM2B_PUBLIC", "TPMT_PUBLIC"), samples);
      break;
    case TPM_CC.Quote: {
      const attest = r.tpm2b("attest", 4096);
      new Cutter(attest, new TpmReader(attest), samples).take("TPMS_ATTEST");
      cutAttest(attest, samples);
      c.take("TPMT_SIGNATURE");
      break;
    }
    case TPM_CC.PCR_Read:
      r.u32("counter");
      for (const s of cutList(c.take("TPML_PCR_SELECTION"))) add(samples, "TPMS_PCR_SELECTION", s);
      c.take("TPML_DIGEST");
      break;
    case TPM_CC.GetCapability:
      r.u8("moreData");
      c.take("TPMS_CAPABILITY_DATA");
      break;
    case TPM_CC.NV_ReadPublic:
      c.take2b("TPM2B_NV_PUBLIC", "TPMS_NV_PUBLIC");
      break;
  }
}
