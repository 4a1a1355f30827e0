/**
 * lockbox.v1.AttestationService: this member's TPM answers other members'
 * re-quotes (requote.ts). Only a current, non-fenced member may ask: the
 * call's TLS client certificate must be a peer certificate of the cluster CA
 * (PeerCertificateVerifier) and `admitCaller` (the control state) must accept
 * it (its peer id and serial); anything else is refused before the TPM is
 * touched, a structured refusal with its code in the trailer (pki/peer-refusal.ts).
 * At most `callsInFlightMax` re-quotes wait for the one TPM at a time.
 */
import * as grpc from "@grpc/grpc-js";
import type { PeerCertificate } from "node:tls";
import type { Tpm } from "../../tpm/client/tpm.js";
import { isLockboxError } from "../errors.js";
import type { PeerCertificateVerifier, PeerIdentity } from "../pki/peer-certificate-verifier.js";
import { peerRefusalStatus, type PeerRefusal } from "../pki/peer-refusal.js";
import { loadAttestationService } from "./join-proto.js";
import { type RequoteRequest, answerRequote } from "./requote.js";
import type { WireObject } from "./join-wire.js";

export const REQUOTE_CALLS_IN_FLIGHT_MAX_DEFAULT = 4;

export interface RequoteServiceOptions {
  /** Runs one operation on this member's TPM (a peer's PeerTpm.use, or a test's open Tpm). */
  useTpm<T>(fn: (tpm: Tpm) => Promise<T>): Promise<T>;
  readonly verifier: PeerCertificateVerifier;
  /** null to admit the peer; otherwise why not (it is fenced, removed, unknown). */
  admitCaller(peer: PeerIdentity): Promise<string | PeerRefusal | null> | string | PeerRefusal | null;
  readonly callsInFlightMax?: number;
  /**
   * Why this member answers no re-quote now (UNAVAILABLE), or null: its TPM is not the one the control
   * state knows yet (a re-enrolment waits to commit). Unanswered, it is marked down, not fenced.
   */
  readonly notAnswering?: () => string | null;
}

export function requoteService(options: RequoteServiceOptions): {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
} {
  const max = options.callsInFlightMax ?? REQUOTE_CALLS_IN_FLIGHT_MAX_DEFAULT;
  let inFlight = 0;
  const Requote: grpc.handleUnaryCall<WireObject, WireObject> = (call, callback) => {
    let identity: PeerIdentity;
    try {
      const cert = (call.getAuthContext() as { sslPeerCertificate?: PeerCertificate } | null)
        ?.sslPeerCertificate;
      identity = options.verifier.verify(cert?.raw);
    } catch (err) {
      if (!isLockboxError(err, "UNAUTHENTICATED")) throw err;
      return callback({ code: grpc.status.UNAUTHENTICATED, details: `re-quote refused: ${err.message}` });
    }
    if (inFlight >= max) {
      return callback({
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: `${inFlight} re-quotes in flight; retry later`,
      });
    }
    inFlight++;
    void (async () => {
      try {
        const refusal = await options.admitCaller(identity);
        if (refusal !== null) return callback(peerRefusalStatus(identity.peerId, refusal));
        const notAnswering = options.notAnswering?.() ?? null;
        if (notAnswering !== null)
          return callback({
            code: grpc.status.UNAVAILABLE,
            details: `re-quote not answered: ${notAnswering}`,
          });
        const request = requestFromWire(call.request);
        if (typeof request === "string")
          return callback({ code: grpc.status.INVALID_ARGUMENT, details: request });
        const answer = await options.useTpm((tpm) => answerRequote(tpm, request));
        callback(null, {
          attest: Buffer.from(answer.attest),
          signature: Buffer.from(answer.signature),
          pcr_values: answer.pcrValues.map((v) => ({
            hash_alg: v.hashAlg,
            pcr: v.pcr,
            value: Buffer.from(v.value),
          })),
        });
      } catch (err) {
        if (isLockboxError(err, "INVALID_ARGUMENT")) {
          return callback({ code: grpc.status.INVALID_ARGUMENT, details: err.message });
        }
        callback({ code: grpc.status.UNAVAILABLE, details: "re-quote: the TPM did not answer" });
      } finally {
        inFlight--;
      }
    })();
  };
  return { definition: loadAttestationService().service, implementation: { Requote } };
}

function requestFromWire(req: WireObject): RequoteRequest | string {
  const nonce = req.nonce;
  const pcrs = req.pcrs;
  if (!(nonce instanceof Uint8Array)) return "nonce: must be bytes";
  if (!Array.isArray(pcrs) || pcrs.length > 24) return "pcrs: must be a list of at most 24";
  const out = [];
  for (const p of pcrs as WireObject[]) {
    const hashAlg = p?.hash_alg;
    const pcr = p?.pcr;
    if (typeof hashAlg !== "number" || typeof pcr !== "number") return "pcrs: each needs hash_alg and pcr";
    out.push({ hashAlg, pcr });
  }
  return { nonce, pcrs: out };
}
