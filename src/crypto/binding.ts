/**
 * What a stored blob or record *is*, as one canonical byte string (DESIGN.md §2): a generic
 * `{kind, id, attributes}` binding, after vault binding a ciphertext to its path. The envelope
 * puts it into its AAD and the record MAC (record-mac.ts) signs it, so a blob or record copied to
 * another place, or any of its fields edited on disk, fails authentication instead of being read
 * as something else.
 *
 * It is deliberately not shaped like a key: a grant, a KEK, a canary and a key record all bind
 * through the same type, each with the attributes it has.
 *
 * Encoding (version 1), every length a u32 BE:
 *   "lockbox-binding/1" | len kind | kind | len id | id | count |
 *   per attribute, sorted by name (UTF-16 code unit order): len name | name | type u8 | value
 * where type 's' is a length-prefixed UTF-8 string, 'i' an i64 BE (safe integers only) and 'b'
 * one byte 0 or 1. Attribute names and types are inside the bytes, so an absent attribute, a
 * string "1" and an integer 1 never encode alike.
 */

export type BindingValue = string | number | boolean;

export interface Binding {
  /** What the thing is, e.g. "key-material", "key-record", "grant", "project-kek". */
  kind: string;
  /** Which one: the key id, grant id, project name... ("" when there is only one). */
  id: string;
  /** Every other field the reader relies on. Numbers must be safe integers. */
  attributes: Readonly<Record<string, BindingValue>>;
}

const DOMAIN = "lockbox-binding/1";
const TYPE_STRING = 0x73;
const TYPE_INTEGER = 0x69;
const TYPE_BOOLEAN = 0x62;
const TWO_32 = 2 ** 32;
const INSERTION_SORT_MAX = 16;

/** The canonical bytes of `binding`, in a buffer of their own. */
export function encodeBinding(binding: Binding): Uint8Array {
  return withEncodedBinding(binding, 0, copyOut);
}

/**
 * Runs `use` on `prefixBytes` bytes for it to fill (whatever they hold on entry is meaningless)
 * followed by the canonical bytes of `binding`, without copying them out of the encoder's scratch
 * buffer: for a consumer that reads them at once (a MAC, a hash, a cipher's AAD) and keeps no
 * reference after it returns.
 */
export function withEncodedBinding<T>(binding: Binding, prefixBytes: number, use: (bytes: Buffer) => T): T {
  const names = sortedNames(binding.attributes);
  // Each value read once, so the size reckoned is the size written.
  const values = names.map((name) => binding.attributes[name]);
  const worst = worstCaseBytes(binding, names, values, prefixBytes);
  // A `use` that encodes another binding reenters the encoder: that nested call gets a buffer of
  // its own rather than the one in use.
  if (scratchBusy) return use(encodeInto(Buffer.allocUnsafe(worst), prefixBytes, binding, names, values));
  if (scratch.length < worst) scratch = Buffer.allocUnsafeSlow(Math.max(worst, 2 * scratch.length));
  scratchBusy = true;
  try {
    return use(encodeInto(scratch, prefixBytes, binding, names, values));
  } finally {
    scratchBusy = false;
  }
}

/**
 * The encoder writes into one scratch buffer, sized for the worst case before it starts (a UTF-16
 * code unit is at most 3 UTF-8 bytes), so each string is written once and its length filled in
 * after it. A binding is never secret (it is AAD and the input of a MAC stored beside it: ids,
 * names, stamps, ciphertext), so what the scratch keeps between calls reveals nothing.
 */
let scratch = Buffer.allocUnsafeSlow(1024);
let scratchBusy = false;

/**
 * The attribute names in UTF-16 code unit order, as Array.prototype.sort() orders them: an
 * insertion sort, quicker than the built-in one for the handful of names a binding has (and the
 * built-in one past INSERTION_SORT_MAX names).
 */
function sortedNames(attributes: Readonly<Record<string, BindingValue>>): string[] {
  const names = Object.keys(attributes);
  if (names.length > INSERTION_SORT_MAX) return names.sort();
  for (let i = 1; i < names.length; i++) {
    const name = names[i]!;
    let j = i - 1;
    while (j >= 0 && names[j]! > name) {
      names[j + 1] = names[j]!;
      j--;
    }
    names[j + 1] = name;
  }
  return names;
}

function copyOut(bytes: Buffer): Uint8Array {
  const out = Buffer.allocUnsafe(bytes.length);
  bytes.copy(out);
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

function worstCaseBytes(
  binding: Binding,
  names: readonly string[],
  values: readonly unknown[],
  prefixBytes: number,
): number {
  let n = prefixBytes + DOMAIN.length + 4 + 3 * binding.kind.length + 4 + 3 * binding.id.length + 4;
  for (let i = 0; i < names.length; i++) {
    const value = values[i];
    n += 4 + 3 * names[i]!.length + 1 + (typeof value === "string" ? 4 + 3 * value.length : 8);
  }
  return n;
}

/** Writes the encoding at `prefixBytes` in `buf` (room for the worst case); returns the bytes used. */
function encodeInto(
  buf: Buffer,
  prefixBytes: number,
  binding: Binding,
  names: readonly string[],
  values: readonly unknown[],
): Buffer {
  let at = writeAscii(buf, prefixBytes, DOMAIN);
  at = writeString(buf, at, binding.kind);
  at = writeString(buf, at, binding.id);
  buf.writeUInt32BE(names.length, at);
  at += 4;
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const value = values[i];
    at = writeString(buf, at, name);
    if (typeof value === "string") {
      buf[at++] = TYPE_STRING;
      at = writeString(buf, at, value);
    } else if (typeof value === "number") {
      if (!Number.isSafeInteger(value))
        throw new RangeError(`binding attribute ${name} is not a safe integer`);
      // i64 BE without a BigInt: the high word is the floor of value / 2^32 (two's complement for
      // negatives), the low word what remains, in [0, 2^32).
      const high = Math.floor(value / TWO_32);
      buf[at++] = TYPE_INTEGER;
      buf.writeInt32BE(high, at);
      buf.writeUInt32BE(value - high * TWO_32, at + 4);
      at += 8;
    } else if (typeof value === "boolean") {
      buf[at++] = TYPE_BOOLEAN;
      buf[at++] = value ? 1 : 0;
    } else {
      throw new TypeError(`binding attribute ${name} has an unsupported type`);
    }
  }
  return buf.subarray(0, at);
}

/** u32 BE UTF-8 length, then the UTF-8 bytes; `buf` has room for 4 + 3 * s.length from `at`. */
function writeString(buf: Buffer, at: number, s: string): number {
  const start = at + 4;
  let end = start;
  let ascii = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) {
      ascii = false;
      break;
    }
    buf[end++] = c;
  }
  // Anything past ASCII (including lone surrogates, written as U+FFFD as Buffer.from does) is
  // left to node's UTF-8 encoder.
  if (!ascii) end = start + buf.write(s, start, "utf8");
  buf.writeUInt32BE(end - start, at);
  return end;
}

function writeAscii(buf: Buffer, at: number, s: string): number {
  for (let i = 0; i < s.length; i++) buf[at++] = s.charCodeAt(i);
  return at;
}
