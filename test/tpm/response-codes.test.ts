import test from "ava";
import { decodeResponseCode, TPM_RC } from "../../tpm/spec/response-codes.js";
import { TpmClientError, TpmError } from "../../tpm/client/tpm-error.js";
import { checkResponse } from "../../tpm/client/command-frame.js";
import { TpmDecodeError } from "../../tpm/marshal/decode-error.js";
import { TPM_CC } from "../../tpm/spec/constants.js";

test("0x902 is the warning TPM_RC_OBJECT_MEMORY (format 0)", (t) => {
  const d = decodeResponseCode(0x902);
  t.like(d, { name: "TPM_RC_OBJECT_MEMORY", format: 0, kind: "warning", baseCode: TPM_RC.OBJECT_MEMORY });
  t.is(d.text, "TPM_RC_OBJECT_MEMORY");
});

test("0x99d is TPM_RC_POLICY_FAIL on session 1 (format 1)", (t) => {
  const d = decodeResponseCode(0x99d);
  t.like(d, {
    name: "TPM_RC_POLICY_FAIL",
    format: 1,
    kind: "error",
    session: 1,
    baseCode: TPM_RC.POLICY_FAIL,
  });
  t.is(d.parameter, undefined);
  t.is(d.handle, undefined);
  t.is(d.text, "TPM_RC_POLICY_FAIL (session 1)");
});

test("0x1df is TPM_RC_INTEGRITY on parameter 1", (t) => {
  const d = decodeResponseCode(0x1df);
  t.like(d, { name: "TPM_RC_INTEGRITY", format: 1, parameter: 1, baseCode: TPM_RC.INTEGRITY });
  t.is(d.text, "TPM_RC_INTEGRITY (parameter 1)");
});

test("0x101 is TPM_RC_FAILURE (format 0, version 1)", (t) => {
  t.like(decodeResponseCode(0x101), {
    name: "TPM_RC_FAILURE",
    format: 0,
    kind: "error",
    baseCode: TPM_RC.FAILURE,
  });
});

test("0x100 is TPM_RC_INITIALIZE", (t) => {
  t.is(decodeResponseCode(0x100).name, "TPM_RC_INITIALIZE");
});

test("format-1 handle errors carry the handle number", (t) => {
  // TPM_RC_HANDLE (0x08b) on handle 1, and TPM_RC_VALUE (0x084) on handle 2.
  t.like(decodeResponseCode(0x18b), { name: "TPM_RC_HANDLE", handle: 1, text: "TPM_RC_HANDLE (handle 1)" });
  t.like(decodeResponseCode(0x284), { name: "TPM_RC_VALUE", handle: 2, text: "TPM_RC_VALUE (handle 2)" });
  t.is(decodeResponseCode(0x18b).session, undefined);
});

test("parameter numbers use four bits, session and handle numbers three", (t) => {
  t.like(decodeResponseCode(0xfd5), { name: "TPM_RC_SIZE", parameter: 15 });
  t.like(decodeResponseCode(0x98e), { name: "TPM_RC_AUTH_FAIL", session: 1 });
  t.like(decodeResponseCode(0xf8e), { name: "TPM_RC_AUTH_FAIL", session: 7 });
});

test("success, vendor, TPM 1.2 and unknown codes are named, not thrown", (t) => {
  t.is(decodeResponseCode(0).name, "TPM_RC_SUCCESS");
  t.is(decodeResponseCode(0x501).kind, "vendor");
  t.is(decodeResponseCode(0x00a).kind, "tpm12");
  t.regex(decodeResponseCode(0x17f).name, /^TPM_RC_UNKNOWN_/);
  t.throws(() => decodeResponseCode(-1), { instanceOf: RangeError });
});

test("TpmError carries the decoded name, the raw code and the command", (t) => {
  const err = new TpmError(TPM_CC.Unseal, 0x99d);
  t.like(err, { code: "TPM_RC", rc: 0x99d, baseCode: TPM_RC.POLICY_FAIL, rcName: "TPM_RC_POLICY_FAIL" });
  t.is(err.rcText, "TPM_RC_POLICY_FAIL (session 1)");
  t.is(err.message, "TPM2_Unseal failed: TPM_RC_POLICY_FAIL (session 1) (0x99d)");
});

test("checkResponse turns a non-zero code into a TpmError and refuses malformed headers", (t) => {
  const err = t.throws(
    () => checkResponse(TPM_CC.Unseal, Uint8Array.of(0x80, 1, 0, 0, 0, 10, 0, 0, 9, 0x9d), true),
    {
      instanceOf: TpmError,
    },
  );
  t.is(err?.rcText, "TPM_RC_POLICY_FAIL (session 1)");
  const ok = Uint8Array.of(0x80, 1, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0);
  t.is(checkResponse(TPM_CC.GetRandom, ok, false).remaining, 2);
  t.throws(() => checkResponse(TPM_CC.GetRandom, ok.subarray(0, 11), false), { instanceOf: TpmDecodeError });
  t.throws(() => checkResponse(TPM_CC.GetRandom, ok.subarray(0, 4), false), { instanceOf: TpmDecodeError });
  t.throws(() => checkResponse(TPM_CC.GetRandom, ok, true), { instanceOf: TpmClientError });
});
