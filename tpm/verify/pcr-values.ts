/**
 * PCR values as a verifier sees them: reported by the attester next to a
 * quote, and approved by a policy. Banks are TPM hash algorithm ids; the JSON
 * form (for the CLI and policy files) names banks ("sha256") and keys PCRs
 * by decimal index: `{ "sha256": { "0": "<hex>", "7": ["<hex>", "<hex>"] } }`.
 */
import { TPM_ALG_ID } from "../spec/constants.js";
import { digestSize } from "../spec/hash.js";

export interface PcrValue {
  readonly hashAlg: number;
  readonly pcr: number;
  readonly value: Uint8Array;
}

/** One approved PCR: the quoted value must be one of `allowed`. */
export interface PcrPolicyEntry {
  readonly hashAlg: number;
  readonly pcr: number;
  readonly allowed: readonly Uint8Array[];
}
export type PcrPolicy = readonly PcrPolicyEntry[];

/** The JSON form of a policy's PCRs: bank name, then decimal PCR index, then one hex digest or a list. */
export type PcrPolicyJson = Readonly<Record<string, Readonly<Record<string, string | readonly string[]>>>>;

export class PcrFormatError extends Error {
  override readonly name = "PcrFormatError";
  readonly code = "bad-pcr-format";
}

export const PCR_INDEX_MAX = 23;
/** Bounds the work a hostile policy or report can cause. */
const ENTRIES_MAX = 8 * 24;
const ALLOWED_PER_PCR_MAX = 64;

const BANKS: ReadonlyMap<string, number> = new Map([
  ["sha1", TPM_ALG_ID.SHA1],
  ["sha256", TPM_ALG_ID.SHA256],
  ["sha384", TPM_ALG_ID.SHA384],
  ["sha512", TPM_ALG_ID.SHA512],
]);

export function bankId(name: string): number {
  const id = BANKS.get(name.toLowerCase());
  if (id === undefined)
    throw new PcrFormatError(`unknown PCR bank '${name}' (expected one of ${[...BANKS.keys()].join(", ")})`);
  return id;
}

export function bankName(hashAlg: number): string {
  for (const [name, id] of BANKS) if (id === hashAlg) return name;
  return `0x${hashAlg.toString(16).padStart(4, "0")}`;
}

/** Parses `sha256:0,1,2,3,7` (banks separated by `+`: `sha1:0+sha256:0,7`). */
export function parsePcrSelection(text: string): { hashAlg: number; pcrs: number[] }[] {
  const banks = text.split("+").map((part) => {
    const m = /^([a-z0-9]+):([0-9]+(?:,[0-9]+)*)$/i.exec(part.trim());
    if (m === null) throw new PcrFormatError(`PCR selection '${part}' is not of the form sha256:0,1,7`);
    const pcrs = m[2]!.split(",").map((s) => parseIndex(s));
    if (new Set(pcrs).size !== pcrs.length)
      throw new PcrFormatError(`PCR selection '${part}' repeats an index`);
    return { hashAlg: bankId(m[1]!), pcrs: [...pcrs].sort((a, b) => a - b) };
  });
  if (new Set(banks.map((b) => b.hashAlg)).size !== banks.length) {
    throw new PcrFormatError(`PCR selection '${text}' names a bank twice`);
  }
  return banks;
}

export function pcrValuesToJson(values: readonly PcrValue[]): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  for (const v of values) {
    const bank = (out[bankName(v.hashAlg)] ??= {});
    bank[String(v.pcr)] = Buffer.from(v.value).toString("hex");
  }
  return out;
}

export function pcrValuesFromJson(json: unknown): PcrValue[] {
  return entriesFromJson(json, "PCR values").map(({ hashAlg, pcr, digests }) => {
    if (digests.length !== 1)
      throw new PcrFormatError(`PCR ${bankName(hashAlg)}:${pcr} must have exactly one value`);
    return { hashAlg, pcr, value: digests[0]! };
  });
}

export function pcrPolicyFromJson(json: unknown): PcrPolicy {
  return entriesFromJson(json, "PCR policy").map(({ hashAlg, pcr, digests }) => ({
    hashAlg,
    pcr,
    allowed: digests,
  }));
}

/** A policy that approves exactly the given values. */
export function pcrPolicyFromValues(values: readonly PcrValue[]): PcrPolicy {
  return values.map((v) => ({ hashAlg: v.hashAlg, pcr: v.pcr, allowed: [v.value] }));
}

export function pcrPolicyToJson(policy: PcrPolicy): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  for (const e of policy) {
    const bank = (out[bankName(e.hashAlg)] ??= {});
    bank[String(e.pcr)] = e.allowed.map((d) => Buffer.from(d).toString("hex"));
  }
  return out;
}

function entriesFromJson(
  json: unknown,
  what: string,
): { hashAlg: number; pcr: number; digests: Uint8Array[] }[] {
  if (!isRecord(json))
    throw new PcrFormatError(`${what} must be an object of banks, e.g. {"sha256": {"0": "<hex>"}}`);
  const out: { hashAlg: number; pcr: number; digests: Uint8Array[] }[] = [];
  const banks = new Set<number>();
  for (const [bank, pcrs] of Object.entries(json)) {
    const hashAlg = bankId(bank);
    // "sha256" and "SHA256" are one bank: two lists for one PCR would be ambiguous.
    if (banks.has(hashAlg)) throw new PcrFormatError(`${what}: bank '${bank}' is named twice`);
    banks.add(hashAlg);
    const size = digestSize(hashAlg)!;
    if (!isRecord(pcrs))
      throw new PcrFormatError(`${what}: bank '${bank}' must map PCR indices to hex digests`);
    for (const [index, raw] of Object.entries(pcrs)) {
      const pcr = parseIndex(index);
      const list = Array.isArray(raw) ? raw : [raw];
      if (list.length === 0 || list.length > ALLOWED_PER_PCR_MAX) {
        throw new PcrFormatError(`${what}: ${bank}:${pcr} needs 1..${ALLOWED_PER_PCR_MAX} values`);
      }
      const digests = list.map((d) => {
        if (typeof d !== "string" || !/^([0-9a-f]{2})*$/i.test(d) || d.length !== 2 * size) {
          throw new PcrFormatError(`${what}: ${bank}:${pcr} value must be ${size} bytes of hex`);
        }
        return new Uint8Array(Buffer.from(d, "hex"));
      });
      out.push({ hashAlg, pcr, digests });
      if (out.length > ENTRIES_MAX) throw new PcrFormatError(`${what}: more than ${ENTRIES_MAX} PCRs`);
    }
  }
  return out;
}

function parseIndex(s: string): number {
  if (!/^[0-9]{1,2}$/.test(s) || Number(s) > PCR_INDEX_MAX) {
    throw new PcrFormatError(`PCR index '${s}' is not an integer in 0..${PCR_INDEX_MAX}`);
  }
  return Number(s);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
