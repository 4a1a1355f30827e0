/**
 * The one rule for a member's id, shared by the raft core, the raft wire codec and transport, the
 * peer's config, and every command that names a member. It lives in cluster/ (pure, importing
 * nothing) so that both cluster/ and src/ can use it.
 *
 * An id is 1..64 characters of letters, digits, '.', '_' and '-', starting with a letter or digit.
 * That keeps ids printable (they go into log lines: no control characters, no forged lines), usable
 * as a certificate common name and as a path segment, and bounded in every message that carries one.
 */
export const NODE_ID_CHARS_MAX = 64;

const NODE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** What a valid id looks like, for error messages. */
export const NODE_ID_RULE = `1..${NODE_ID_CHARS_MAX} characters of A-Z a-z 0-9 . _ - starting with a letter or digit`;

export function isNodeId(value: unknown): value is string {
  return typeof value === "string" && NODE_ID_PATTERN.test(value);
}
