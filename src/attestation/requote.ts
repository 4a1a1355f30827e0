/**
 * A re-quote, the attester's side of continuous attestation (DESIGN.md §5):
 * a member asks, with a fresh nonce, for a quote of the PCRs its policy
 * names; this member's TPM quotes them with the AK activated at its join
 * (a primary key: the same template gives the same AK every time) and reports
 * the values. The request comes from another member over mTLS, but is still
 * checked for bounds: it decides how much TPM work is done.
 */
import { withTransient } from "../../tpm/client/scoped.js";
import type { Tpm } from "../../tpm/client/tpm.js";
import { createAk } from "../../tpm/keys/ak.js";
import { encode } from "../../tpm/marshal/writer.js";
import { quote } from "../../tpm/quote.js";
import type { PcrValue } from "../../tpm/verify/pcr-values.js";
import { NONCE_BYTES_MIN } from "../../tpm/verify/quote-failure.js";
import { LockboxError } from "../errors.js";
import type { QuotedPcr } from "./join-messages.js";
import { selection } from "./joiner.js";
import { restoreClockSafe } from "./restore-clock-safe.js";

export interface RequoteRequest {
  /** Fresh, single use, NONCE_BYTES_MIN..REQUOTE_NONCE_BYTES_MAX bytes: the quote's extraData. */
  readonly nonce: Uint8Array;
  readonly pcrs: readonly QuotedPcr[];
}

export interface RequoteAnswer {
  readonly attest: Uint8Array;
  readonly signature: Uint8Array;
  readonly pcrValues: readonly PcrValue[];
}

/** TPM2_Quote takes at most 64 bytes of qualifying data. */
export const REQUOTE_NONCE_BYTES_MAX = 64;
const REQUOTE_PCRS_MAX = 24;

export async function answerRequote(tpm: Tpm, request: RequoteRequest): Promise<RequoteAnswer> {
  const n = request.nonce.length;
  if (n < NONCE_BYTES_MIN || n > REQUOTE_NONCE_BYTES_MAX) {
    throw new LockboxError(
      "INVALID_ARGUMENT",
      `nonce: must be ${NONCE_BYTES_MIN}..${REQUOTE_NONCE_BYTES_MAX} bytes, got ${n}`,
      "nonce",
    );
  }
  if (request.pcrs.length === 0 || request.pcrs.length > REQUOTE_PCRS_MAX) {
    throw new LockboxError("INVALID_ARGUMENT", `pcrs: must name 1..${REQUOTE_PCRS_MAX} PCRs`, "pcrs");
  }
  if (request.pcrs.some((p) => !Number.isInteger(p.pcr) || p.pcr < 0 || p.pcr > 23)) {
    throw new LockboxError("INVALID_ARGUMENT", "pcrs: a PCR index is outside 0..23", "pcrs");
  }
  const pcrs = selection(request.pcrs);
  return tpm.exclusive(() =>
    withTransient(
      tpm,
      () => createAk(tpm),
      async (ak) => {
        await restoreClockSafe(tpm);
        const q = await quote(tpm, ak, { pcrs, extraData: request.nonce });
        const read = await tpm.pcrRead(pcrs);
        return {
          attest: q.attestBytes,
          signature: encode((w) => q.signature.marshal(w)),
          pcrValues: read.values.map((v) => ({ hashAlg: v.hash, pcr: v.pcr, value: v.digest })),
        };
      },
    ),
  );
}
