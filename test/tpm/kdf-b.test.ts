import test from "ava";
import { createHmac } from "node:crypto";
import { KdfError, kdfa, kdfe } from "../../tpm/crypto/kdf.js";

// The KDFa self-test vectors of the TPM 2.0 reference implementation (KdfTestData.h):
// key, label "KDFSELFTESTLABEL", contexts and 160-bit outputs per hash.
const key = Buffer.from("271fa08bbdc5060ec3dfa928ff9b73123a12da0c", "hex");
const contextU = Buffer.from("ce244f395dca7391", "hex");
const contextV = Buffer.from("da504031ddf12e83", "hex");
const expected = {
  sha1: "55b5a7184aa07423c47dae766c26a2377d7cf851",
  sha256: "bb0259e1c8ba607e6a2cd704b69a902e9ade84c4",
  sha384: "1dce70c9113eb2dba47bd9cfc72bf46f45b09312",
  sha512: "8be2c1b85b78569b9fa759f5857c56d684810fd3",
} as const;

for (const [hash, out] of Object.entries(expected)) {
  test(`kdfa matches the TPM reference implementation's ${hash} self-test vector`, (t) => {
    const got = kdfa(hash as keyof typeof expected, key, "KDFSELFTESTLABEL", contextU, contextV, 160);
    t.is(Buffer.from(got).toString("hex"), out);
  });
}

test("kdfa output longer than one digest is the counter-mode concatenation, and bit count changes every block", (t) => {
  const long = Buffer.from(kdfa("sha256", key, "STORAGE", contextU, contextV, 512));
  const block = (i: number): Buffer => {
    const c = Buffer.alloc(4);
    c.writeUInt32BE(i);
    const bits = Buffer.alloc(4);
    bits.writeUInt32BE(512);
    return createHmac("sha256", key)
      .update(Buffer.concat([c, Buffer.from("STORAGE\0"), contextU, contextV, bits]))
      .digest();
  };
  t.deepEqual(long, Buffer.concat([block(1), block(2)]));
  // The bit count is an input of every block, so a shorter output is not a prefix of a longer one.
  t.notDeepEqual(Buffer.from(kdfa("sha256", key, "STORAGE", contextU, contextV, 256)), long.subarray(0, 32));
});

test("kdfa clears the unused high bits of the first octet when bits is not a multiple of 8", (t) => {
  for (let i = 0; i < 32; i++) {
    const out = kdfa("sha256", Buffer.from([i]), "X", new Uint8Array(), new Uint8Array(), 13);
    t.is(out.length, 2);
    t.is(out[0]! & 0xe0, 0);
  }
});

test("kdfe is H(counter || Z || use || 0 || partyU || partyV), different for different parties", (t) => {
  const z = Buffer.alloc(32, 7);
  const a = kdfe("sha256", z, "IDENTITY", Buffer.from("u"), Buffer.from("v"), 256);
  const b = kdfe("sha256", z, "IDENTITY", Buffer.from("v"), Buffer.from("u"), 256);
  t.is(a.length, 32);
  t.notDeepEqual(a, b);
});

test("kdfa refuses bad bit counts and labels with a zero character", (t) => {
  for (const bits of [0, -8, 1.5, 1 << 30]) {
    const e = t.throws(() => kdfa("sha256", key, "L", contextU, contextV, bits), { instanceOf: KdfError });
    t.is(e?.code, "bad-bits");
  }
  const e = t.throws(() => kdfa("sha256", key, "L\0", contextU, contextV, 8), { instanceOf: KdfError });
  t.is(e?.code, "bad-label");
});
