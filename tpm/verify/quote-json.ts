/**
 * The JSON form of a quote as `lockbox tpm quote` prints it and `lockbox tpm
 * verify` reads it: everything a verifier needs besides what it must already
 * trust (the AK public from enrollment, its own nonce, its policy). Binary
 * fields are hex of the TPM's own encodings.
 */
import { decodeExact } from "../marshal/reader.js";
import { TpmsAttest } from "../spec/attest.js";
import { type PcrValue, pcrValuesFromJson, pcrValuesToJson } from "./pcr-values.js";
import type { QuoteClock } from "./quote-failure.js";

export const QUOTE_JSON_FORMAT = "lockbox-tpm-quote/1";

export interface QuoteJson {
  readonly format: typeof QUOTE_JSON_FORMAT;
  /** Marshalled TPMT_PUBLIC of the AK that signed (for enrollment; a verifier uses its own copy). */
  readonly akPublic: string;
  readonly akName: string;
  /** The AK public key as SPKI PEM, e.g. for `tpm2_checkquote -u`. */
  readonly akPem: string;
  readonly nonce: string;
  /** Marshalled TPMS_ATTEST, exactly the signed bytes. */
  readonly attest: string;
  /** Marshalled TPMT_SIGNATURE. */
  readonly signature: string;
  readonly pcrs: Record<string, Record<string, string>>;
}

export interface ParsedQuote {
  readonly akPublic: Uint8Array;
  readonly akName: Uint8Array;
  readonly nonce: Uint8Array;
  readonly attest: Uint8Array;
  readonly signature: Uint8Array;
  readonly pcrValues: PcrValue[];
}

export class QuoteJsonError extends Error {
  override readonly name = "QuoteJsonError";
  readonly code = "bad-quote-json";
}

/** Bounds a hostile file before anything is decoded. */
const FIELD_HEX_CHARS_MAX = 16_384;

export function quoteToJson(q: {
  akPublic: Uint8Array;
  akName: Uint8Array;
  akPem: string;
  nonce: Uint8Array;
  attest: Uint8Array;
  signature: Uint8Array;
  pcrValues: readonly PcrValue[];
}): QuoteJson {
  return {
    format: QUOTE_JSON_FORMAT,
    akPublic: hex(q.akPublic),
    akName: hex(q.akName),
    akPem: q.akPem,
    nonce: hex(q.nonce),
    attest: hex(q.attest),
    signature: hex(q.signature),
    pcrs: pcrValuesToJson(q.pcrValues),
  };
}

export function parseQuoteJson(json: unknown): ParsedQuote {
  if (typeof json !== "object" || json === null) throw new QuoteJsonError("quote JSON must be an object");
  const o = json as Record<string, unknown>;
  if (o.format !== QUOTE_JSON_FORMAT)
    throw new QuoteJsonError(`quote JSON format must be '${QUOTE_JSON_FORMAT}'`);
  try {
    return {
      akPublic: hexField(o, "akPublic"),
      akName: hexField(o, "akName"),
      nonce: hexField(o, "nonce"),
      attest: hexField(o, "attest"),
      signature: hexField(o, "signature"),
      pcrValues: pcrValuesFromJson(o.pcrs),
    };
  } catch (err) {
    if (err instanceof QuoteJsonError) throw err;
    throw new QuoteJsonError(`quote JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** The clock state inside a quote's (unverified) attest bytes, e.g. of an earlier accepted quote. */
export function clockOfAttest(attest: Uint8Array): QuoteClock {
  try {
    const c = decodeExact(attest, "TPMS_ATTEST", TpmsAttest.unmarshal).clockInfo;
    return { clock: c.clock, resetCount: c.resetCount, restartCount: c.restartCount };
  } catch (err) {
    throw new QuoteJsonError(
      `attest is not a TPMS_ATTEST: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

/** Parses a hex string field (even length, hex digits only, bounded). */
export function hexField(o: Record<string, unknown>, field: string): Uint8Array {
  const v = o[field];
  if (typeof v !== "string" || v.length > FIELD_HEX_CHARS_MAX || !/^([0-9a-fA-F]{2})*$/.test(v)) {
    throw new QuoteJsonError(`field '${field}' must be a hex string`);
  }
  return new Uint8Array(Buffer.from(v, "hex"));
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}
