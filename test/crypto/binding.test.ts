/**
 * The canonical binding encoding is stored data's contract (every envelope's AAD and every record
 * MAC covers it): the encoder must produce exactly the bytes it always has. Pinned by known
 * vectors, and by a property test against the original algorithm (one small Buffer per field,
 * concatenated), kept here as the reference, on many generated bindings.
 */
import fc from "fast-check";
import test from "ava";
import { encodeBinding, withEncodedBinding, type Binding } from "../../src/crypto/binding.js";

/** The version-1 encoder as first written: the reference the fast encoder must match byte for byte. */
function referenceEncoding(binding: Binding): Uint8Array {
  const u32 = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n, 0);
    return b;
  };
  const lengthPrefixed = (s: string): Buffer => {
    const bytes = Buffer.from(s, "utf8");
    return Buffer.concat([u32(bytes.length), bytes]);
  };
  const parts: Buffer[] = [
    Buffer.from("lockbox-binding/1", "utf8"),
    lengthPrefixed(binding.kind),
    lengthPrefixed(binding.id),
  ];
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
  return new Uint8Array(Buffer.concat(parts));
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString("hex");

// Produced by the original encoder; stored envelopes and record MACs depend on these bytes.
const VECTORS: [Binding, string][] = [
  [{ kind: "", id: "", attributes: {} }, "6c6f636b626f782d62696e64696e672f31000000000000000000000000"],
  [
    {
      kind: "key-material",
      id: "6b1f0c1e-2a3b-4c5d-8e9f-0a1b2c3d4e5f",
      attributes: { project: "tenant-a", algorithm: "AES", bitLength: 256 },
    },
    "6c6f636b626f782d62696e64696e672f310000000c6b65792d6d6174657269616c0000002436623166306331652d326133622d346335642d386539662d3061316232633364346535660000000300000009616c676f726974686d7300000003414553000000096269744c656e6774686900000000000001000000000770726f6a656374730000000874656e616e742d61",
  ],
  [
    {
      kind: "k",
      id: "i",
      attributes: {
        neg: -1,
        min: -(2 ** 53 - 1),
        max: 2 ** 53 - 1,
        zero: 0,
        big: 2 ** 32,
        t: true,
        f: false,
        s: "1",
        i: 1,
      },
    },
    "6c6f636b626f782d62696e64696e672f31000000016b00000001690000000900000003626967690000000100000000000000016662000000000169690000000000000001000000036d617869001fffffffffffff000000036d696e69ffe0000000000001000000036e656769ffffffffffffffff000000017373000000013100000001746201000000047a65726f690000000000000000",
  ],
  [
    { kind: "grant", id: "é☃𝄞", attributes: { ñame: "日本語", lone: "\ud800x", Z: "", a: "" } },
    "6c6f636b626f782d62696e64696e672f31000000056772616e7400000009c3a9e29883f09d849e00000004000000015a730000000000000001617300000000000000046c6f6e657300000004efbfbd7800000005c3b1616d657300000009e697a5e69cace8aa9e",
  ],
];

test("encodeBinding produces the known version-1 bytes", (t) => {
  for (const [binding, expected] of VECTORS) {
    t.is(hex(encodeBinding(binding)), expected, JSON.stringify(binding));
    t.is(hex(referenceEncoding(binding)), expected, "the reference agrees");
  }
});

// Strings of ASCII, of Latin-1, of any code point (surrogate pairs), and of any UTF-16 code unit
// (lone surrogates, which UTF-8 encoding replaces with U+FFFD).
const ascii = fc.string({ maxLength: 40 });
const text = fc.oneof(
  fc.string({ unit: "binary-ascii", maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 40 }),
);
const value = fc.oneof(
  ascii,
  text,
  fc.boolean(),
  fc.integer(),
  fc.maxSafeInteger(),
  fc.maxSafeNat(),
  fc.constantFrom(
    0,
    -0,
    1,
    -1,
    2 ** 31,
    -(2 ** 31),
    2 ** 32 - 1,
    2 ** 32,
    -(2 ** 32),
    2 ** 53 - 1,
    -(2 ** 53 - 1),
  ),
);
const binding: fc.Arbitrary<Binding> = fc.record({
  kind: fc.oneof(ascii, text),
  id: fc.oneof(ascii, text),
  attributes: fc.dictionary(fc.oneof(ascii, text), value, { maxKeys: 24 }),
});

test("encodeBinding and withEncodedBinding match the original algorithm on generated bindings", (t) => {
  fc.assert(
    fc.property(binding, fc.nat(32), (b, prefix) => {
      const expected = hex(referenceEncoding(b));
      if (hex(encodeBinding(b)) !== expected) return false;
      return withEncodedBinding(b, prefix, (bytes) => hex(bytes.subarray(prefix)) === expected);
    }),
    { numRuns: 5000 },
  );
  t.pass();
});

test("a binding past the encoder's first scratch size encodes alike", (t) => {
  const big: Binding = {
    kind: "k".repeat(3000),
    id: "☃".repeat(2000),
    attributes: { a: "x".repeat(5000), b: "𝄞".repeat(700), c: 7 },
  };
  t.is(hex(encodeBinding(big)), hex(referenceEncoding(big)));
  t.is(hex(encodeBinding(VECTORS[1]![0])), VECTORS[1]![1], "and a small one after it");
  // Many attributes, inserted in no order (integer-like names included): past the insertion sort.
  for (const count of [15, 16, 17, 40]) {
    const attributes: Record<string, number> = {};
    for (let i = 0; i < count; i++)
      attributes[(i * 7919) % 2 === 0 ? `n${(i * 37) % 101}` : String((i * 53) % 97)] = i;
    const many: Binding = { kind: "k", id: "", attributes };
    t.is(hex(encodeBinding(many)), hex(referenceEncoding(many)), `${count} attributes`);
  }
});

test("results are independent buffers: a later encoding does not change an earlier one", (t) => {
  const [a, aHex] = VECTORS[1]!;
  const [b] = VECTORS[2]!;
  const first = encodeBinding(a);
  encodeBinding(b);
  t.is(hex(first), aHex);
});

test("an encoding nested inside withEncodedBinding does not overwrite the one in use", (t) => {
  const [a, aHex] = VECTORS[1]!;
  const [b, bHex] = VECTORS[2]!;
  withEncodedBinding(a, 3, (outer) => {
    t.is(hex(encodeBinding(b)), bHex);
    withEncodedBinding(b, 0, (inner) => t.is(hex(inner), bHex));
    t.is(hex(outer.subarray(3)), aHex);
  });
});

test("unsafe integers and unsupported types are refused, as before", (t) => {
  for (const bad of [1.5, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY]) {
    t.throws(() => encodeBinding({ kind: "k", id: "", attributes: { n: bad } }), { instanceOf: RangeError });
  }
  for (const bad of [undefined, null, {}, 1n]) {
    t.throws(() => encodeBinding({ kind: "k", id: "", attributes: { n: bad as never } }), {
      instanceOf: TypeError,
    });
  }
  // The encoder is usable again after a refusal.
  t.is(hex(encodeBinding(VECTORS[1]![0])), VECTORS[1]![1]);
});
