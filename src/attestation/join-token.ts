/**
 * The one-time join token `lockbox peer enroll` prints, and how a joiner
 * uses it. The secret is 32 random bytes in base64url (43 characters); the
 * control state keeps only joinTokenHash() of it, SHA-256 of the token's text
 * (the same hash as src/controlplane's joinTokenSha256, so either side may
 * make the token). An operator may also pass it with the cluster's name:
 *
 *   lbjt1.<SHA-256 of the cluster CA certificate, hex>.<secret>
 *
 * The joiner authenticates the cluster by the fingerprint (the one in the
 * token, or `--ca-fingerprint` beside a bare secret): the verifier's TLS
 * certificate must chain to the CA with that fingerprint. It then proves
 * knowledge of the token with an HMAC keyed by joinTokenHash over the
 * session's transcript (the verifier's random session id, the peer id and the
 * AK name), so a proof is good for one session only and the token itself
 * never travels. The token is spent when the join is admitted.
 */
import { X509Certificate, createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";

const PREFIX = "lbjt1";
const SECRET_BYTES = 32;
const FINGERPRINT = /^[0-9a-f]{64}$/;
const SECRET = /^[A-Za-z0-9_-]{43}$/;
const PROOF_CONTEXT = Buffer.from("lockbox join proof v1\0", "latin1");

export interface JoinToken {
  /** SHA-256 of the cluster CA certificate (DER), lower-case hex, when the token names it. */
  readonly caFingerprint?: string;
  /** The secret as printed: 43 base64url characters. */
  readonly secret: string;
}

export class JoinTokenError extends Error {
  override readonly name = "JoinTokenError";
  readonly code = "join-token-malformed";
}

/** A new token for the cluster whose CA is `caCertificatePem`; print `text` once, store only joinTokenHash(). */
export function createJoinToken(caCertificatePem: string): { text: string; token: JoinToken } {
  const token = {
    caFingerprint: caFingerprint(caCertificatePem),
    secret: randomBytes(SECRET_BYTES).toString("base64url"),
  };
  return { text: formatJoinToken(token), token };
}

/** `lbjt1.<fingerprint>.<secret>`, or the bare secret when the token names no CA. */
export function formatJoinToken(token: JoinToken): string {
  return token.caFingerprint === undefined
    ? token.secret
    : `${PREFIX}.${token.caFingerprint}.${token.secret}`;
}

/** Parses a token as typed by an operator (with or without the CA); throws JoinTokenError naming the part that is wrong. */
export function parseJoinToken(text: string): JoinToken {
  const trimmed = text.trim();
  if (SECRET.test(trimmed)) return { secret: trimmed };
  const parts = trimmed.split(".");
  if (parts.length !== 3 || parts[0] !== PREFIX) {
    throw new JoinTokenError(`a join token is 43 base64url characters, or ${PREFIX}.<fingerprint>.<token>`);
  }
  const [, fingerprint, secret] = parts as [string, string, string];
  if (!FINGERPRINT.test(fingerprint))
    throw new JoinTokenError("the token's CA fingerprint is not 64 hex digits");
  if (!SECRET.test(secret)) throw new JoinTokenError("the token's secret is not 43 base64url characters");
  return { caFingerprint: fingerprint, secret };
}

/** What the control state stores for a token: SHA-256 of its text, never the token itself. */
export function joinTokenHash(token: JoinToken): Uint8Array {
  return createHash("sha256").update(token.secret, "utf8").digest();
}

/** The joiner's proof for one session: HMAC(joinTokenHash, context || session id || peer id || AK name). */
export function joinTokenProof(
  tokenHash: Uint8Array,
  transcript: { sessionId: Uint8Array; peerId: string; akName: Uint8Array },
): Uint8Array {
  const peerId = Buffer.from(transcript.peerId, "utf8");
  const h = createHmac("sha256", tokenHash).update(PROOF_CONTEXT);
  for (const part of [transcript.sessionId, peerId, transcript.akName]) {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(part.length);
    h.update(length).update(part);
  }
  return h.digest();
}

export function checkJoinTokenProof(
  tokenHash: Uint8Array,
  transcript: { sessionId: Uint8Array; peerId: string; akName: Uint8Array },
  proof: Uint8Array,
): boolean {
  const expected = joinTokenProof(tokenHash, transcript);
  return proof.length === expected.length && timingSafeEqual(proof, expected);
}

/** SHA-256 of a certificate's DER, lower-case hex: what `lockbox init` prints and `--ca-fingerprint` takes. */
export function caFingerprint(certificatePem: string): string {
  return createHash("sha256").update(new X509Certificate(certificatePem).raw).digest("hex");
}

/** Accepts "AB:CD:..." or plain hex, in any case; undefined unless it is 32 bytes. */
export function normalizeFingerprint(text: string): string | undefined {
  const hex = text.trim().replace(/:/g, "").toLowerCase();
  return FINGERPRINT.test(hex) ? hex : undefined;
}
