/** Quote: the TPM signs the digest of selected PCRs together with caller-chosen extraData. */
import type { AuthSession } from "./client/sessions.js";
import type { Tpm, TpmObject } from "./client/tpm.js";
import { decodeExact } from "./marshal/reader.js";
import { TpmsAttest } from "./spec/attest.js";
import type { TpmlPcrSelection } from "./spec/pcr.js";
import type { TpmtSignature } from "./spec/signature.js";

export interface Quote {
  /** The TPM2B_ATTEST contents, exactly as signed: verify the signature over these bytes, not a re-encoding. */
  readonly attestBytes: Uint8Array;
  readonly attest: TpmsAttest;
  readonly signature: TpmtSignature;
}

export interface QuoteOptions {
  readonly pcrs: TpmlPcrSelection;
  /** Caller-chosen qualifying data (a nonce, or H(nonce || ephemeral key)), at most 64 bytes. */
  readonly extraData: Uint8Array;
  readonly auth?: AuthSession;
}

export async function quote(tpm: Tpm, ak: TpmObject, options: QuoteOptions): Promise<Quote> {
  const { quoted, signature } = await tpm.quote(ak, options.extraData, options.pcrs, options.auth);
  const attest = decodeExact(quoted, "TPM2B_ATTEST", TpmsAttest.unmarshal);
  return { attestBytes: quoted, attest, signature };
}
