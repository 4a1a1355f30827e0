import test from "ava";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import {
  PcrFormatError,
  parsePcrSelection,
  pcrPolicyFromJson,
  pcrPolicyToJson,
  pcrValuesFromJson,
  pcrValuesToJson,
} from "../../tpm/verify/pcr-values.js";
import { QuoteJsonError, parseQuoteJson, quoteToJson } from "../../tpm/verify/quote-json.js";

const D0 = "00".repeat(32);
const D1 = "11".repeat(32);

test("PCR selections parse per bank, sorted, and refuse unknown banks, repeats and out-of-range indices", (t) => {
  t.deepEqual(parsePcrSelection("sha256:7,0,3"), [{ hashAlg: TPM_ALG_ID.SHA256, pcrs: [0, 3, 7] }]);
  t.deepEqual(parsePcrSelection("sha1:0+sha256:1"), [
    { hashAlg: TPM_ALG_ID.SHA1, pcrs: [0] },
    { hashAlg: TPM_ALG_ID.SHA256, pcrs: [1] },
  ]);
  for (const bad of [
    "md5:0",
    "sha256:0,0",
    "sha256:24",
    "sha256:",
    "sha256:1+sha256:2",
    "sha256:-1",
    "0,1",
  ]) {
    t.throws(() => parsePcrSelection(bad), { instanceOf: PcrFormatError }, bad);
  }
});

test("PCR values and policies round-trip through JSON; wrong digest sizes and non-hex are refused", (t) => {
  const values = [
    { hashAlg: TPM_ALG_ID.SHA256, pcr: 0, value: new Uint8Array(Buffer.from(D0, "hex")) },
    { hashAlg: TPM_ALG_ID.SHA256, pcr: 7, value: new Uint8Array(Buffer.from(D1, "hex")) },
  ];
  t.deepEqual(pcrValuesFromJson(pcrValuesToJson(values)), values);
  const policy = pcrPolicyFromJson({ sha256: { "7": [D0, D1], "0": D0 } });
  t.deepEqual(pcrPolicyFromJson(pcrPolicyToJson(policy)), policy);
  t.is(policy.find((e) => e.pcr === 7)?.allowed.length, 2);
  const bad: unknown[] = [
    null,
    [],
    { sha256: { "0": "00" } },
    { sha256: { "0": "zz".repeat(32) } },
    { sha256: { "0": [] } },
    { sha256: { x: D0 } },
    { sha256: D0 },
    { md5: { "0": D0 } },
  ];
  for (const b of bad)
    t.throws(() => pcrPolicyFromJson(b), { instanceOf: PcrFormatError }, JSON.stringify(b));
  t.throws(
    () => pcrValuesFromJson({ sha256: { "0": [D0, D1] } }),
    { instanceOf: PcrFormatError },
    "one value per PCR",
  );
});

test("quote JSON round-trips and names a bad format or field", (t) => {
  const q = {
    akPublic: Uint8Array.from([1, 2]),
    akName: Uint8Array.from([3]),
    akPem: "pem",
    nonce: Uint8Array.from([4]),
    attest: Uint8Array.from([5, 6]),
    signature: Uint8Array.from([7]),
    pcrValues: [{ hashAlg: TPM_ALG_ID.SHA256, pcr: 1, value: new Uint8Array(32) }],
  };
  const json = JSON.parse(JSON.stringify(quoteToJson(q))) as unknown;
  const parsed = parseQuoteJson(json);
  t.deepEqual(parsed.attest, q.attest);
  t.deepEqual(parsed.pcrValues, q.pcrValues);
  for (const broken of [
    { ...(json as object), format: "other/1" },
    { ...(json as object), attest: "xyz" },
    { ...(json as object), pcrs: { sha256: { "1": "00" } } },
    "not an object",
  ]) {
    t.throws(() => parseQuoteJson(broken), { instanceOf: QuoteJsonError });
  }
});
