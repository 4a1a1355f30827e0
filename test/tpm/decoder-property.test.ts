/**
 * Property tests: no decoder crashes on hostile bytes. Each either throws a
 * TpmDecodeError or decodes a prefix of its input that re-encodes to exactly
 * those bytes (so it used nothing beyond the buffer, and nothing it dropped).
 */
import test from "ava";
import fc from "fast-check";
import { TpmDecodeError } from "../../tpm/marshal/decode-error.js";
import { TpmReader } from "../../tpm/marshal/reader.js";
import { encode } from "../../tpm/marshal/writer.js";
import { TpmsAttest, TpmsClockInfo } from "../../tpm/spec/attest.js";
import { TpmsEccPoint, TpmtHa } from "../../tpm/spec/basic.js";
import { TpmsCapabilityData } from "../../tpm/spec/capability.js";
import { TPM_ALG_ID, TPM_CAP, TPM_GENERATED_VALUE, TPM_ST } from "../../tpm/spec/constants.js";
import { TpmsCreationData } from "../../tpm/spec/creation.js";
import { TpmsIdObject } from "../../tpm/spec/credential.js";
import { TpmsNvPublic } from "../../tpm/spec/nv.js";
import { TpmlDigest, TpmlPcrSelection } from "../../tpm/spec/pcr.js";
import { Tpm2bPublic } from "../../tpm/spec/public.js";
import { TpmtScheme, TpmtSymDef } from "../../tpm/spec/schemes.js";
import { TpmsSensitiveCreate, TpmtSensitive } from "../../tpm/spec/sensitive.js";
import { TpmtSignature } from "../../tpm/spec/signature.js";
import {
  eccAkTemplate,
  eccStorageTemplate,
  rsaAkTemplate,
  rsaEkTemplate,
  sealedObjectTemplate,
} from "../../tpm/keys/templates.js";
import { CODECS } from "./structure-registry-a.js";

const RUNS = 300;

/** Valid encodings to mutate: fuzzing from these reaches deep into the unions. */
function seeds(): Uint8Array[] {
  const pcrs = TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [0, 7, 16]);
  const clock = new TpmsClockInfo(123456n, 3, 1, true);
  const values: { marshal(w: import("../../tpm/marshal/writer.js").TpmWriter): void }[] = [
    ...[
      rsaEkTemplate(),
      eccAkTemplate(),
      rsaAkTemplate(),
      eccStorageTemplate(),
      sealedObjectTemplate(new Uint8Array(32)),
    ],
    ...[rsaEkTemplate(), eccAkTemplate()].map((p) => new Tpm2bPublic(p)),
    new TpmsAttest(TPM_GENERATED_VALUE, new Uint8Array(34), new Uint8Array(32), clock, 7n, {
      type: TPM_ST.ATTEST_QUOTE,
      pcrSelect: pcrs,
      pcrDigest: new Uint8Array(32),
    }),
    new TpmsAttest(TPM_GENERATED_VALUE, new Uint8Array(34), new Uint8Array(0), clock, 7n, {
      type: TPM_ST.ATTEST_NV,
      indexName: new Uint8Array(34),
      offset: 4,
      nvContents: Uint8Array.of(1, 2),
    }),
    new TpmtSignature({
      sigAlg: TPM_ALG_ID.ECDSA,
      hash: TPM_ALG_ID.SHA256,
      signatureR: new Uint8Array(32),
      signatureS: new Uint8Array(32),
    }),
    new TpmtSignature({ sigAlg: TPM_ALG_ID.RSASSA, hash: TPM_ALG_ID.SHA256, sig: new Uint8Array(256) }),
    new TpmtSignature({ sigAlg: TPM_ALG_ID.HMAC, hmac: new TpmtHa(TPM_ALG_ID.SHA256, new Uint8Array(32)) }),
    new TpmsCapabilityData({ capability: TPM_CAP.HANDLES, handles: [0x80000000, 0x81010001] }),
    new TpmsCapabilityData({
      capability: TPM_CAP.TPM_PROPERTIES,
      tpmProperties: [{ property: 0x100, value: 0x322e3000 }],
    }),
    new TpmsCapabilityData({ capability: TPM_CAP.PCRS, assignedPcr: pcrs }),
    new TpmsCreationData(
      pcrs,
      new Uint8Array(32),
      0,
      TPM_ALG_ID.SHA256,
      new Uint8Array(34),
      new Uint8Array(34),
      new Uint8Array(0),
    ),
    new TpmsNvPublic(0x01c00002, TPM_ALG_ID.SHA256, 0x420f000a, new Uint8Array(0), 1000),
    new TpmsIdObject(new Uint8Array(32), new Uint8Array(34)),
    new TpmsSensitiveCreate(new Uint8Array(0), Uint8Array.of(9, 9)),
    new TpmtSensitive(TPM_ALG_ID.ECC, new Uint8Array(0), new Uint8Array(32), new Uint8Array(32)),
    new TpmsEccPoint(new Uint8Array(32), new Uint8Array(32)),
    new TpmlDigest([new Uint8Array(32), new Uint8Array(20)]),
    TpmtSymDef.AES_128_CFB,
    new TpmtSymDef(TPM_ALG_ID.XOR, TPM_ALG_ID.SHA256),
    new TpmtScheme(TPM_ALG_ID.ECDAA, TPM_ALG_ID.SHA256, 5),
    new TpmtScheme(TPM_ALG_ID.XOR, TPM_ALG_ID.SHA256, 0, TPM_ALG_ID.KDF1_SP800_108),
  ];
  return values.map((v) => encode((w) => v.marshal(w)));
}

/** The property: a TpmDecodeError, or an exact re-encoding of the consumed prefix. */
function decodesSafely(name: string, bytes: Uint8Array): boolean {
  const r = new TpmReader(bytes);
  let value: { marshal(w: import("../../tpm/marshal/writer.js").TpmWriter): void };
  try {
    value = CODECS[name]!.decode(r);
  } catch (err) {
    if (err instanceof TpmDecodeError) return true;
    throw new Error(`${name} threw ${String(err)} on ${Buffer.from(bytes).toString("hex")}`);
  }
  if (r.position > bytes.length) return false;
  const again = encode((w) => value.marshal(w));
  return Buffer.from(again).equals(Buffer.from(bytes.subarray(0, r.position)));
}

const SEEDS = seeds();

/** A seed with a few random byte edits, a truncation, or random bytes appended. */
const mutated = fc
  .record({
    seed: fc.constantFrom(...SEEDS),
    edits: fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), { maxLength: 4 }),
    cut: fc.option(fc.nat(), { nil: undefined }),
    tail: fc.uint8Array({ maxLength: 8 }),
  })
  .map(({ seed, edits, cut, tail }) => {
    const b = Uint8Array.from(seed);
    for (const e of edits) if (b.length > 0) b[e.at % b.length] = e.value;
    const kept = cut === undefined ? b : b.subarray(0, cut % (b.length + 1));
    return Uint8Array.from([...kept, ...tail]);
  });

for (const name of Object.keys(CODECS)) {
  test(`${name}: random bytes decode exactly or throw TpmDecodeError`, (t) => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (b) => decodesSafely(name, b)),
      { numRuns: RUNS },
    );
    fc.assert(
      fc.property(mutated, (b) => decodesSafely(name, b)),
      { numRuns: RUNS },
    );
    t.pass();
  });
}

test("every strict prefix of a valid encoding is refused with TpmDecodeError or re-encodes exactly", (t) => {
  const decodersFor = (bytes: Uint8Array): string[] =>
    Object.keys(CODECS).filter((name) => {
      try {
        const r = new TpmReader(bytes);
        CODECS[name]!.decode(r);
        return r.remaining === 0;
      } catch {
        return false;
      }
    });
  let prefixes = 0;
  for (const seed of SEEDS) {
    const names = decodersFor(seed);
    t.true(
      names.length > 0,
      `seed ${Buffer.from(seed).toString("hex").slice(0, 16)} decodes with some codec`,
    );
    for (const name of names) {
      for (let n = 0; n < seed.length; n++) {
        const prefix = seed.subarray(0, n);
        // Some structures legitimately end early (an empty list); those must still re-encode exactly.
        const r = new TpmReader(prefix);
        try {
          const v = CODECS[name]!.decode(r);
          t.deepEqual(
            encode((w) => v.marshal(w)),
            prefix.slice(0, r.position),
          );
        } catch (err) {
          t.true(err instanceof TpmDecodeError, `${name} on a ${n}-byte prefix threw ${String(err)}`);
        }
        prefixes++;
      }
    }
  }
  t.true(prefixes > 1000);
});
