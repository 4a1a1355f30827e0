/**
 * Round trip of every structure on bytes captured from a real swtpm:
 * marshal(unmarshal(b)) equals b, byte for byte.
 */
import test from "ava";
import { randomBytes } from "node:crypto";
import { inspect } from "node:util";
import { withSession, withTransient } from "../../tpm/client/scoped.js";
import { makeCredential } from "../../tpm/credential/make-credential.js";
import { activateCredential } from "../../tpm/activate-credential.js";
import { createAk } from "../../tpm/keys/ak.js";
import {
  createEk,
  ECC_EK_CERT_NV_INDEX,
  RSA_EK_CERT_NV_INDEX,
  RSA_EK_PERSISTENT_HANDLE,
} from "../../tpm/keys/ek.js";
import { createStoragePrimary } from "../../tpm/keys/storage.js";
import { sealedObjectTemplate } from "../../tpm/keys/templates.js";
import { TpmDecodeError, TpmUnionTagError } from "../../tpm/marshal/decode-error.js";
import { TpmReader, decodeExact } from "../../tpm/marshal/reader.js";
import { encode } from "../../tpm/marshal/writer.js";
import { quote } from "../../tpm/quote.js";
import { TpmtHa } from "../../tpm/spec/basic.js";
import { TPM_ALG_ID, TPM_CAP, TPM_ST } from "../../tpm/spec/constants.js";
import { objectName } from "../../tpm/spec/name.js";
import { TpmlPcrSelection, TpmsPcrSelection } from "../../tpm/spec/pcr.js";
import { TpmtSymDef } from "../../tpm/spec/schemes.js";
import { TpmsSensitiveCreate, TpmtSensitive } from "../../tpm/spec/sensitive.js";
import type { Tpm } from "../../tpm/client/tpm.js";
import { digestSize } from "../../tpm/spec/hash.js";
import { collectSamples } from "./capture-a.js";
import { CODECS, NOT_ON_THE_WIRE } from "./structure-registry-a.js";
import { NO_LEFTOVERS, leftovers, startTestTpm } from "./helpers-a.js";

test("every structure round-trips byte for byte on bytes captured from swtpm", async (t) => {
  const { tpm, recorder } = await startTestTpm(t);
  for (const cap of Object.values(TPM_CAP)) {
    // ACT is newer than swtpm 0.7's libtpms; a refused capability is simply not sampled.
    await tpm.getCapability(cap, cap === TPM_CAP.HANDLES ? 0x81000000 : 0, 64).catch(() => undefined);
  }
  await tpm.getCapability(TPM_CAP.TPM_PROPERTIES, 0x100, 64);
  await tpm.readPublic(RSA_EK_PERSISTENT_HANDLE);
  await tpm.nvReadPublic(RSA_EK_CERT_NV_INDEX);
  await tpm.nvReadPublic(ECC_EK_CERT_NV_INDEX);
  const banks = await allocatedBanks(tpm);
  t.true(banks.includes(TPM_ALG_ID.SHA256));
  await tpm.pcrRead(new TpmlPcrSelection(banks.map((h) => TpmsPcrSelection.of(h, [...Array(24).keys()]))));
  await tpm.pcrExtend(
    16,
    banks.map((h) => new TpmtHa(h, new Uint8Array(digestSize(h)!).fill(1))),
  );
  const pcrs = TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [0, 7, 16]);
  for (const alg of ["ecc", "rsa"] as const) {
    await withTransient(tpm, createAk(tpm, alg), (ak) =>
      quote(tpm, ak, { pcrs, extraData: randomBytes(32) }),
    );
  }
  await withTransient(tpm, createStoragePrimary(tpm), async (srk) => {
    const sealed = await tpm.create(srk, sealedObjectTemplate(new Uint8Array(32)), {
      sensitive: new TpmsSensitiveCreate(new Uint8Array(0), Uint8Array.of(1, 2, 3)),
    });
    await withTransient(tpm, tpm.load(srk, sealed.outPrivate, sealed.outPublic), async () => undefined);
    await tpm.flushSession(await tpm.startAuthSession({ type: "hmac", saltKey: srk }));
  });
  await withTransient(tpm, createEk(tpm), async (ek) => {
    await tpm.flushSession(await tpm.startAuthSession({ type: "hmac", saltKey: ek }));
    await withSession(
      tpm,
      tpm.startAuthSession({ type: "policy", symmetric: new TpmtSymDef(TPM_ALG_ID.XOR, TPM_ALG_ID.SHA256) }),
      async () => undefined,
    );
    await withTransient(tpm, createAk(tpm), async (ak) => {
      const made = makeCredential({
        ekPublic: ek.publicArea,
        akName: objectName(ak.publicArea),
        credential: randomBytes(16),
      });
      await activateCredential(tpm, ak, made, ek);
    });
  });
  t.deepEqual(await leftovers(tpm), NO_LEFTOVERS);

  const samples = collectSamples(recorder.exchanges());
  let checked = 0;
  for (const [name, codec] of Object.entries(CODECS)) {
    if (NOT_ON_THE_WIRE.has(name)) continue;
    const list = samples.get(name) ?? [];
    t.true(list.length > 0, `no sample of ${name} was captured`);
    for (const bytes of list) {
      const again = encode((w) => decodeExact(bytes, name, codec.decode).marshal(w));
      t.deepEqual(Buffer.from(again).toString("hex"), Buffer.from(bytes).toString("hex"), name);
      checked++;
    }
  }
  t.log(`${checked} captured samples of ${samples.size} structures round-tripped`);
});

test("TPMT_SENSITIVE (never on the wire in clear) round-trips on a built value", (t) => {
  const s = new TpmtSensitive(TPM_ALG_ID.KEYEDHASH, Uint8Array.of(1), randomBytes(32), randomBytes(16));
  const bytes = encode((w) => s.marshal(w));
  t.deepEqual(
    encode((w) => decodeExact(bytes, "TPMT_SENSITIVE", TpmtSensitive.unmarshal).marshal(w)),
    bytes,
  );
});

test("tagged-union accessors refuse the wrong member", async (t) => {
  const { tpm } = await startTestTpm(t, { identity: "shared" });
  const pcrs = TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [0]);
  const q = await withTransient(tpm, createAk(tpm), (ak) =>
    quote(tpm, ak, { pcrs, extraData: Uint8Array.of(7) }),
  );
  t.is(q.attest.type, TPM_ST.ATTEST_QUOTE);
  t.deepEqual(q.attest.quote().pcrSelect.entries(), [{ hash: TPM_ALG_ID.SHA256, pcr: 0 }]);
  t.throws(() => q.attest.certify(), { instanceOf: TpmUnionTagError });
  t.is(q.signature.ecdsa().signatureR.length, 32);
  t.throws(() => q.signature.rsa(), { instanceOf: TpmUnionTagError });
  const ak = await tpm.createPrimary(
    0x4000000b,
    (await import("../../tpm/keys/templates.js")).eccAkTemplate(),
  );
  await tpm.flushContext(ak.handle);
  t.throws(() => ak.publicArea.rsaParms(), { instanceOf: TpmUnionTagError });
  t.is(ak.publicArea.eccPoint().x.length, 32);
  t.deepEqual(await leftovers(tpm), NO_LEFTOVERS);
});

test("TPMS_PCR_SELECTION lists PCRs in ascending order and refuses out-of-range indices", (t) => {
  const s = TpmsPcrSelection.of(TPM_ALG_ID.SHA256, [16, 0, 7, 23]);
  t.deepEqual(Array.from(s.pcrSelect), [0x81, 0x00, 0x81]);
  t.deepEqual(s.pcrs(), [0, 7, 16, 23]);
  t.throws(() => TpmsPcrSelection.of(TPM_ALG_ID.SHA256, [256]), { instanceOf: RangeError });
});

test("a TPM2B whose contents are shorter than the structure inside is refused as inconsistent", (t) => {
  // TPM2B_PUBLIC of size 4 around a TPMT_PUBLIC that needs more bytes.
  const bytes = Uint8Array.of(0, 4, 0, 0x23, 0, 0x0b);
  const err = t.throws(() => decodeExact(bytes, "TPM2B_PUBLIC", CODECS.TPM2B_PUBLIC!.decode), {
    instanceOf: TpmDecodeError,
  });
  t.is(err?.code, "TRUNCATED");
  // A size larger than the limit is refused before reading.
  const big = Uint8Array.of(0xff, 0xff);
  t.is(
    t.throws(() => new TpmReader(big).tpm2b("TPM2B_DIGEST", 64), { instanceOf: TpmDecodeError })?.code,
    "OVERSIZE",
  );
  // Trailing bytes inside a TPM2B wrapper are refused.
  const inner = encode((w) => new TpmsSensitiveCreate().marshal(w));
  const padded = encode((w) => w.tpm2b(Uint8Array.from([...inner, 0])));
  const e2 = t.throws(() => decodeExact(padded, "x", CODECS.TPM2B_SENSITIVE_CREATE!.decode), {
    instanceOf: TpmDecodeError,
  });
  t.is(e2?.code, "TRAILING_BYTES");
  // YES_NO must be 0 or 1, so decoding then encoding stays exact.
  const clock = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 2);
  t.is(
    t.throws(() => decodeExact(clock, "c", CODECS.TPMS_CLOCK_INFO!.decode), { instanceOf: TpmDecodeError })
      ?.code,
    "INCONSISTENT",
  );
});

/** The PCR banks the TPM has allocated (with at least one PCR selected). */
async function allocatedBanks(tpm: Tpm): Promise<number[]> {
  const { capabilityData } = await tpm.getCapability(TPM_CAP.PCRS, 0, 16);
  const d = capabilityData.data;
  if (d.capability !== TPM_CAP.PCRS) throw new Error("wrong capability");
  return d.assignedPcr.selections.filter((s) => s.pcrs().length > 0).map((s) => s.hash);
}

test("TPMS_SENSITIVE_CREATE and TPMT_SENSITIVE never show their secret bytes in inspect output or JSON", (t) => {
  const secret = Uint8Array.from([0xde, 0xad, 0xbe, 0xef, 0x5e, 0xc4, 0xe7, 0x01]);
  const shown = [
    new TpmsSensitiveCreate(secret, secret),
    new TpmtSensitive(TPM_ALG_ID.KEYEDHASH, secret, secret, secret),
  ].flatMap((s) => [inspect(s), inspect({ nested: [s] }, { depth: 5 }), JSON.stringify(s), String(s)]);
  for (const text of shown) {
    t.false(/222,\s*173|deadbeef|3q2\+7w|"0":\s*222/i.test(text), text);
  }
  // Encoding is unaffected: the TPM still gets the bytes.
  t.true(
    Buffer.from(encode((w) => new TpmsSensitiveCreate(new Uint8Array(0), secret).marshal(w))).includes(
      Buffer.from(secret),
    ),
  );
});
