import test from "ava";
import fc from "fast-check";
import { escapeClientText } from "../../src/audit/audit-text.js";

/** The escaping as first written, one character at a time: the fast path must agree with it. */
function referenceEscape(text: string): string {
  let out = "";
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    const unsafe =
      cp < 0x20 ||
      (cp >= 0x7f && cp <= 0x9f) ||
      (cp >= 0xd800 && cp <= 0xdfff) ||
      cp === 0x061c ||
      cp === 0x00ad ||
      (cp >= 0x200b && cp <= 0x200f) ||
      (cp >= 0x2028 && cp <= 0x202e) ||
      (cp >= 0x2060 && cp <= 0x206f) ||
      cp === 0xfeff ||
      (cp >= 0xfff9 && cp <= 0xfffb);
    if (ch === "\\") out += "\\\\";
    else if (unsafe) out += cp <= 0xff ? `\\x${cp.toString(16).padStart(2, "0")}` : `\\u{${cp.toString(16)}}`;
    else out += ch;
  }
  return out;
}

test("escapeClientText agrees with the character-by-character escaping on any text", (t) => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string({ unit: "binary", maxLength: 40 }),
        fc.string({ unit: "grapheme-ascii", maxLength: 40 }),
        fc.string({ maxLength: 40 }),
      ),
      (s) => escapeClientText(s) === referenceEscape(s),
    ),
    { numRuns: 5000 },
  );
  t.pass();
});

test("printable ASCII passes unchanged; a backslash, a control or a non-ASCII formatting character is escaped", (t) => {
  t.is(escapeClientText("3f1c0e4a-9d2b-8e6f-a1b2-c3d4e5f60718"), "3f1c0e4a-9d2b-8e6f-a1b2-c3d4e5f60718");
  t.is(escapeClientText("a\\b"), "a\\\\b");
  t.is(escapeClientText("a\x1b[31mb"), "a\\x1b[31mb");
  t.is(escapeClientText("x\u202ey"), "x\\u{202e}y");
  t.is(escapeClientText("caf\u00e9"), "caf\u00e9");
  t.is(escapeClientText(""), "");
});
