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

const DOMAIN = Buffer.from("lockbox-binding/1", "utf8");

export function encodeBinding(binding: Binding): Uint8Array {
  const parts: Buffer[] = [DOMAIN, lengthPrefixed(binding.kind), lengthPrefixed(binding.id)];
  const names = Object.keys(binding.attributes).sort();
  parts.push(u32(names.length));
  for (const name of names) {
    const value = binding.attributes[name];
    parts.push(lengthPrefixed(name));
    if (typeof value === "string") {
      parts.push(Buffer.of(0x73), lengthPrefixed(value));
    } else if (typeof value === "number") {
      if (!Number.isSafeInteger(value))
        throw new RangeError(`binding attribute ${name} is not a safe integer`);
      const b = Buffer.alloc(9);
      b[0] = 0x69;
      b.writeBigInt64BE(BigInt(value), 1);
      parts.push(b);
    } else if (typeof value === "boolean") {
      parts.push(Buffer.of(0x62, value ? 1 : 0));
    } else {
      throw new TypeError(`binding attribute ${name} has an unsupported type`);
    }
  }
  const out = Buffer.concat(parts);
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

function lengthPrefixed(s: string): Buffer {
  const bytes = Buffer.from(s, "utf8");
  return Buffer.concat([u32(bytes.length), bytes]);
}
