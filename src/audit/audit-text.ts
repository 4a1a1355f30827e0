/**
 * Client-supplied text in the audit log (DESIGN.md §7: "never unescaped
 * client strings"). Everything a client chose (a key id, a project, an error
 * detail quoting its input) is stored escaped, so no reader of the log, a
 * terminal included, ever meets a control character, an escape sequence, a
 * line break or a bidirectional override from a client. The escaping is
 * unambiguous: a backslash is doubled, so "\x1b" in the log is always the
 * escape of ESC, never four characters the client sent.
 */

/** `text` with backslashes doubled and every control or invisible formatting character as \xNN or \u{N}. */
export function escapeClientText(text: string): string {
  // Most audited text (ids, identities, status names) is printable ASCII without a backslash,
  // which escapes to itself: returned as it is, without building a copy character by character.
  if (isPlainAscii(text)) return text;
  let out = "";
  for (const ch of text) {
    if (ch === "\\") out += "\\\\";
    else out += isUnsafe(ch) ? escapeChar(ch) : ch;
  }
  return out;
}

/**
 * For display: replaces any control or formatting character still present (a
 * log written before escaping existed, a damaged record) and leaves everything
 * else, backslashes included, as it is, so escaped text is shown once.
 */
export function terminalSafe(text: string): string {
  let out = "";
  for (const ch of text) out += isUnsafe(ch) ? escapeChar(ch) : ch;
  return out;
}

/** Every code unit is printable ASCII (0x20-0x7e) other than the backslash: none needs escaping. */
function isPlainAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x5c) return false;
  }
  return true;
}

function isUnsafe(ch: string): boolean {
  const cp = ch.codePointAt(0)!;
  return (
    cp < 0x20 || // C0 controls: ESC, CR, LF, BS, ...
    (cp >= 0x7f && cp <= 0x9f) || // DEL and C1 controls (CSI is 0x9b)
    (cp >= 0xd800 && cp <= 0xdfff) || // a lone surrogate
    cp === 0x061c || // Arabic letter mark
    cp === 0x00ad || // soft hyphen (invisible)
    (cp >= 0x200b && cp <= 0x200f) || // zero-width characters, LRM, RLM
    (cp >= 0x2028 && cp <= 0x202e) || // line and paragraph separators, bidi embeddings and overrides
    (cp >= 0x2060 && cp <= 0x206f) || // word joiner, bidi isolates, invisible operators
    cp === 0xfeff || // zero-width no-break space
    (cp >= 0xfff9 && cp <= 0xfffb) // interlinear annotations
  );
}

function escapeChar(ch: string): string {
  const cp = ch.codePointAt(0)!;
  return cp <= 0xff ? `\\x${cp.toString(16).padStart(2, "0")}` : `\\u{${cp.toString(16)}}`;
}
