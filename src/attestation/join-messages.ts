/**
 * The join protocol's three exchanges, transport-neutral (join-wire.ts maps
 * them to lockbox.v1.JoinService). Every byte field comes from a machine not
 * yet trusted; the verifier checks each one where it enters.
 *
 *   joiner                                   verifier (a member)
 *   begin    {peer id, EK, EK cert, AK}  ->  member, EK, EK chain; MakeCredential
 *            <-  {session id, credential wrapped to the EK for the AK's name}
 *   activate {ActivateCredential's answer, join token proof}  ->  credential, token
 *            <-  {nonce, the policy's PCRs}
 *   attest   {quote, PCR values, ephemeral key, TLS key}  ->  quote checks, admit
 *            <-  {certificate, CMK wrapped to the ephemeral key}   (member: joining)
 *   confirm  {peer id, certificate serial, proof of the CMK}  ->  (any member; after sealing)
 *            <-  {confirmed}                                     (member: active)
 *
 * Each answer is either the next step or a JoinRefusal.
 */
import type { PcrValue } from "../../tpm/verify/pcr-values.js";
import type { JoinRefusal } from "./join-refusal.js";
import type { WrappedCmk } from "./ephemeral-key-wrap.js";
import type { PeerSetup } from "./join-authority.js";

export type JoinResult<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly refusal: JoinRefusal };

export interface JoinHello {
  readonly peerId: string;
  /** The EK's TPMT_PUBLIC, marshalled. */
  readonly ekPublic: Uint8Array;
  /** The EK certificate (DER) from the TPM's NV; may be empty when the enrollment holds one. */
  readonly ekCertificate: Uint8Array;
  /** The AK's TPMT_PUBLIC, marshalled. */
  readonly akPublic: Uint8Array;
}

export interface JoinChallenge {
  readonly sessionId: Uint8Array;
  /** TPMS_ID_OBJECT (integrity HMAC and encrypted credential), marshalled. */
  readonly credentialBlob: Uint8Array;
  /** The seed encrypted to the EK (TPM2B_ENCRYPTED_SECRET contents). */
  readonly encryptedSecret: Uint8Array;
}

export interface JoinActivation {
  readonly sessionId: Uint8Array;
  /** What ActivateCredential released; empty when the TPM refused. */
  readonly credential: Uint8Array;
  /** The TPM's response code when it refused (0 otherwise), for the verifier's audit record. */
  readonly tpmResponseCode: number;
  /** joinTokenProof() when the joiner has a join token; empty otherwise. */
  readonly joinTokenProof: Uint8Array;
}

/** A PCR the joiner must quote: bank as a TPM hash algorithm id, PCR index. */
export interface QuotedPcr {
  readonly hashAlg: number;
  readonly pcr: number;
}

export interface JoinNonce {
  /** Single use, 32 bytes. The quote's extraData must be quoteExtraData(nonce, ephemeral key). */
  readonly nonce: Uint8Array;
  readonly expiresInMs: number;
  /** The PCRs the policy names, in the order to quote them. */
  readonly pcrs: readonly QuotedPcr[];
}

export interface JoinQuote {
  readonly sessionId: Uint8Array;
  /** TPM2B_ATTEST contents exactly as signed. */
  readonly attest: Uint8Array;
  /** TPMT_SIGNATURE, marshalled. */
  readonly signature: Uint8Array;
  readonly pcrValues: readonly PcrValue[];
  /** Uncompressed P-256 point: the key the CMK will be wrapped to. */
  readonly ephemeralPublicKey: Uint8Array;
  /** The joiner's TLS public key (SPKI DER), to be certified. */
  readonly tlsPublicKey: Uint8Array;
}

export interface JoinAdmitted {
  readonly clusterId: string;
  readonly certificatePem: string;
  readonly caCertificatePem: string;
  readonly wrappedCmk: WrappedCmk;
  /** For the joined peer's config.json, when the verifier knows it. */
  readonly peerSetup?: PeerSetup;
}

/** After sealing: proof (join-confirm.ts) that the joiner holds the CMK of epoch `epoch`. */
export interface JoinConfirm {
  readonly peerId: string;
  /** Upper-case hex serial of the certificate the admission issued. */
  readonly certificateSerial: string;
  readonly epoch: number;
  readonly proof: Uint8Array;
}

export interface JoinConfirmed {
  readonly peerId: string;
}

/** The verifier's side, as the wire server and in-process tests call it. `source` is the remote address. */
export interface JoinVerifierApi {
  begin(hello: JoinHello, source: string): Promise<JoinResult<JoinChallenge>>;
  activate(activation: JoinActivation, source: string): Promise<JoinResult<JoinNonce>>;
  attest(quote: JoinQuote, source: string): Promise<JoinResult<JoinAdmitted>>;
  confirm(confirm: JoinConfirm, source: string): Promise<JoinResult<JoinConfirmed>>;
}
