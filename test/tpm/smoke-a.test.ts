import test from "ava";
import { randomBytes } from "node:crypto";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { TpmlPcrSelection } from "../../tpm/spec/pcr.js";
import { TpmtHa } from "../../tpm/spec/basic.js";
import { createAk } from "../../tpm/keys/ak.js";
import { withTransient } from "../../tpm/client/scoped.js";
import { quote } from "../../tpm/quote.js";
import { sealSecret, unsealSecret } from "../../tpm/seal/seal.js";
import { startTestTpm, leftovers } from "./helpers-a.js";

test("smoke", async (t) => {
  const { tpm, recorder } = await startTestTpm(t, "smoke");
  const pcrs = TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [7, 16]);
  const q = await withTransient(tpm, createAk(tpm), (ak) => quote(tpm, ak, { pcrs, extraData: Uint8Array.of(1, 2, 3) }));
  t.log(q.attest.quote(), q.signature);
  const secret = new Uint8Array(randomBytes(32));
  const blob = await sealSecret(tpm, { secret, pcrs });
  recorder.clear();
  const out = await unsealSecret(tpm, blob);
  t.deepEqual(out, secret);
  const hex = Buffer.from(secret).toString("hex");
  t.false(recorder.exchanges().some((e) => Buffer.from(e.response!).toString("hex").includes(hex)));
  await tpm.pcrExtend(16, [new TpmtHa(TPM_ALG_ID.SHA256, new Uint8Array(32))]);
  const err = await t.throwsAsync(unsealSecret(tpm, blob));
  t.log(err?.message);
  t.deepEqual(await leftovers(tpm), { transient: [], loaded: [], saved: [] });
});
