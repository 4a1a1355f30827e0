/**
 * Why a peer call is refused, as a value (issue 9 item 6): a code that peers branch on and words for
 * the operator. Every peer service (raft, replication, re-quotes) refuses with the same status,
 * PERMISSION_DENIED, and names the code in the `lockbox-peer-refusal` trailer, so the refused peer
 * learns that it is fenced (and stops reporting itself ready) without reading any message text.
 */
import * as grpc from "@grpc/grpc-js";

export const PEER_REFUSAL_CODES = [
  "not-founded", // this peer's control state has no records yet
  "not-member", // no member has this id
  "removed", // the member was removed: never again
  "fenced", // its last re-quote failed: it must attest again
  "not-joined", // enrolled, but it never completed its join
  "revoked", // the certificate is on the revocation list
  "wrong-certificate", // not the certificate this member joined with
] as const;
export type PeerRefusalCode = (typeof PEER_REFUSAL_CODES)[number];

export interface PeerRefusal {
  readonly code: PeerRefusalCode;
  readonly reason: string;
}

export const PEER_REFUSAL_METADATA_KEY = "lockbox-peer-refusal";

/** The status refusing a call of `peerId`: PERMISSION_DENIED, the refusal's code in the trailer. */
export function peerRefusalStatus(peerId: string, refusal: string | PeerRefusal): Partial<grpc.StatusObject> {
  if (typeof refusal === "string") {
    return { code: grpc.status.PERMISSION_DENIED, details: `peer ${peerId} refused: ${refusal}` };
  }
  const metadata = new grpc.Metadata();
  metadata.set(PEER_REFUSAL_METADATA_KEY, refusal.code);
  return {
    code: grpc.status.PERMISSION_DENIED,
    details: `peer ${peerId} refused: ${refusal.reason}`,
    metadata,
  };
}

/** The refusal code a failed call's status carries, if it is a peer refusal; undefined otherwise. */
export function peerRefusalCodeOf(status: unknown): PeerRefusalCode | undefined {
  if (typeof status !== "object" || status === null) return undefined;
  const { code, metadata } = status as { code?: unknown; metadata?: unknown };
  if (code !== grpc.status.PERMISSION_DENIED || !(metadata instanceof grpc.Metadata)) return undefined;
  const value = metadata.get(PEER_REFUSAL_METADATA_KEY)[0];
  return typeof value === "string" && (PEER_REFUSAL_CODES as readonly string[]).includes(value)
    ? (value as PeerRefusalCode)
    : undefined;
}

/** Only the reason words, for a caller that takes a string (null admits). */
export function refusalReason(refusal: string | PeerRefusal | null): string | null {
  return refusal === null || typeof refusal === "string" ? refusal : refusal.reason;
}
