/**
 * Opaque, tamper-checked page tokens: base64url(JSON payload) "." base64url(HMAC-SHA256 tag),
 * the tag under a subkey of the CMK (Barrier.mac). A token that was edited, truncated, forged or
 * issued for another listing is refused with invalidArgument("page_token"). Tokens stop working
 * when the CMK rotates; a client then restarts its listing.
 */
import { timingSafeEqual } from "node:crypto";
import type { Barrier } from "../crypto/barrier.js";
import { invalidArgument } from "../errors.js";

const TAG_BYTES = 16;

export function signPageToken(barrier: Barrier, purpose: string, payload: Record<string, string>): string {
  const body = Buffer.from(JSON.stringify(payload), "utf8");
  const tag = barrier.mac(`page-token/${purpose}`, body).subarray(0, TAG_BYTES);
  return `${body.toString("base64url")}.${Buffer.from(tag).toString("base64url")}`;
}

/** Returns the payload's string fields; throws invalidArgument("page_token") for anything else. */
export function verifyPageToken(barrier: Barrier, purpose: string, token: string): Record<string, string> {
  const refuse = () => invalidArgument("page_token", "is not a valid page token");
  const m = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(token);
  if (m === null) throw refuse();
  const body = Buffer.from(m[1]!, "base64url");
  const tag = Buffer.from(m[2]!, "base64url");
  // Re-encoding must give the same text, so no two spellings of one token exist.
  if (body.toString("base64url") !== m[1] || tag.toString("base64url") !== m[2] || tag.length !== TAG_BYTES) {
    throw refuse();
  }
  const expected = barrier.mac(`page-token/${purpose}`, body).subarray(0, TAG_BYTES);
  if (!timingSafeEqual(tag, expected)) throw refuse();
  let payload: unknown;
  try {
    payload = JSON.parse(body.toString("utf8"));
  } catch {
    throw refuse();
  }
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) throw refuse();
  for (const v of Object.values(payload)) if (typeof v !== "string") throw refuse();
  return payload as Record<string, string>;
}
