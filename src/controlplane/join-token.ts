/**
 * The one-time join token `peer enroll` prints: 32 random bytes (base64url) shown once to the operator;
 * the control state keeps only its SHA-256 and expiry on the member record, and the transition
 * enrolled -> joining consumes it. The attested join (src/attestation) checks a presented token here.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { MemberRecord } from "./control-records.js";

/**
 * Never starts with "-": the operator passes it as `lockbox join --token X`, and an argument parser
 * takes "-..." for an option (1 token in 64 failed so). Redrawing costs under 0.03 bits of the 256.
 */
export function newJoinToken(): string {
  for (;;) {
    const token = randomBytes(32).toString("base64url");
    if (!token.startsWith("-")) return token;
  }
}

export const joinTokenSha256 = (token: string): string =>
  createHash("sha256").update(token, "utf8").digest("hex");

export type JoinTokenCheck =
  { ok: true } | { ok: false; reason: "no-token" | "mismatch" | "expired" | "not-enrolled" };

/** Whether `token` is the live join token of `member` at `nowMs` (constant-time comparison). */
export function checkJoinToken(
  member: MemberRecord | undefined,
  token: string,
  nowMs: number,
): JoinTokenCheck {
  if (member === undefined || member.state !== "enrolled") return { ok: false, reason: "not-enrolled" };
  if (member.joinTokenSha256 === "") return { ok: false, reason: "no-token" };
  const presented = Buffer.from(joinTokenSha256(token), "hex");
  if (!timingSafeEqual(presented, Buffer.from(member.joinTokenSha256, "hex")))
    return { ok: false, reason: "mismatch" };
  if (nowMs > member.joinTokenExpiresAtMs) return { ok: false, reason: "expired" };
  return { ok: true };
}
