/**
 * The quote policy's JSON form: every pin is required, each problem names its
 * field, an empty PCR set is its own refusal, and a policy survives a JSON
 * round trip unchanged (it lives in the control state as JSON).
 */
import test from "ava";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import {
  type QuotePolicy,
  QuotePolicyError,
  firmwareVersionText,
  parseFirmwareVersion,
  parseQuotePolicy,
  quotePolicyForValues,
  quotePolicyFromJson,
} from "../../tpm/verify/quote-policy.js";

const D0 = "00".repeat(32);
const GOOD: QuotePolicy = {
  pcrs: { sha256: { "0": D0, "7": [D0, "11".repeat(32)] } },
  hashAlg: "sha256",
  signatureScheme: "ecdsa",
  firmwareVersionMin: "20191023.00000000",
};

test("a complete policy parses to the pinned algorithm ids, PCR entries and firmware minimum", (t) => {
  const p = parseQuotePolicy(GOOD);
  if ("problem" in p) return t.fail(p.problem);
  t.is(p.hashAlg, TPM_ALG_ID.SHA256);
  t.is(p.signatureScheme, TPM_ALG_ID.ECDSA);
  t.is(p.rsaPssSaltBytes, undefined);
  t.is(p.firmwareVersionMin, 0x20191023_00000000n);
  t.deepEqual(
    p.pcrs.map((e) => [e.pcr, e.allowed.length]),
    [
      [0, 1],
      [7, 2],
    ],
  );
  t.deepEqual(quotePolicyFromJson(JSON.parse(JSON.stringify(GOOD))), GOOD);
  const pss = parseQuotePolicy({ ...GOOD, signatureScheme: "rsapss", rsaPssSaltBytes: 32 });
  t.like(pss, { signatureScheme: TPM_ALG_ID.RSAPSS, rsaPssSaltBytes: 32 });
});

test("each malformed field is named; an empty PCR set is policy-empty; nothing throws", (t) => {
  const cases: [unknown, string][] = [
    [null, "policy"],
    [[], "policy"],
    [{ ...GOOD, hashAlg: undefined }, "hashAlg"],
    [{ ...GOOD, hashAlg: "sha1" }, "hashAlg"],
    [{ ...GOOD, hashAlg: "toString" }, "hashAlg"],
    [{ ...GOOD, signatureScheme: "ecdaa" }, "signatureScheme"],
    [{ ...GOOD, signatureScheme: "rsapss" }, "rsaPssSaltBytes"],
    [{ ...GOOD, signatureScheme: "rsapss", rsaPssSaltBytes: -1 }, "rsaPssSaltBytes"],
    [{ ...GOOD, signatureScheme: "rsapss", rsaPssSaltBytes: 1.5 }, "rsaPssSaltBytes"],
    [{ ...GOOD, rsaPssSaltBytes: 32 }, "rsaPssSaltBytes"],
    [{ ...GOOD, firmwareVersionMin: "1.2" }, "firmwareVersionMin"],
    [{ ...GOOD, firmwareVersionMin: 5 }, "firmwareVersionMin"],
    [{ ...GOOD, pcrs: { sha256: { "0": "00" } } }, "pcrs"],
    [{ ...GOOD, pcrs: { sha256: { "24": D0 } } }, "pcrs"],
    [{ ...GOOD, pcrs: { sha256: { "0": D0 }, SHA256: { "0": D0 } } }, "pcrs"],
    [{ ...GOOD, pcrs: undefined }, "pcrs"],
    [{ ...GOOD, firmwareVersionMinimum: "00000000.00000000" }, "firmwareVersionMinimum"],
  ];
  for (const [json, field] of cases) {
    const p = parseQuotePolicy(json);
    t.like(p, { code: "policy-malformed", field }, JSON.stringify(json));
    const err = t.throws(() => quotePolicyFromJson(json), { instanceOf: QuotePolicyError });
    t.is(err?.code, "policy-malformed");
  }
  for (const pcrs of [{}, { sha256: {} }, { sha256: {}, sha384: {} }]) {
    t.like(parseQuotePolicy({ ...GOOD, pcrs }), { code: "policy-empty", field: "pcrs" });
  }
});

test("firmware versions read and print in `lockbox tpm info`'s form, compared as 64-bit numbers", (t) => {
  t.is(parseFirmwareVersion("20191023.00120000"), 0x20191023_00120000n);
  t.is(firmwareVersionText(0x20191023_00120000n), "20191023.00120000");
  t.is(firmwareVersionText(1n), "00000000.00000001");
  t.is(parseFirmwareVersion("FFFFFFFF.ffffffff"), 2n ** 64n - 1n);
  for (const bad of ["", "20191023", "2019102.300120000", "20191023.0012000g", " 20191023.00120000"]) {
    t.is(parseFirmwareVersion(bad), undefined, bad);
  }
  t.true(parseFirmwareVersion("00000002.00000000")! > parseFirmwareVersion("00000001.ffffffff")!);
});

test("quotePolicyForValues approves exactly the given values with the given pins", (t) => {
  const v = { hashAlg: TPM_ALG_ID.SHA256, pcr: 3, value: new Uint8Array(32).fill(7) };
  const policy = quotePolicyForValues([v], {
    hashAlg: "sha384",
    signatureScheme: "rsapss",
    rsaPssSaltBytes: 48,
    firmwareVersionMin: "00000000.00000000",
  });
  t.deepEqual(policy.pcrs, { sha256: { "3": ["07".repeat(32)] } });
  t.like(parseQuotePolicy(policy), { hashAlg: TPM_ALG_ID.SHA384, rsaPssSaltBytes: 48 });
});
