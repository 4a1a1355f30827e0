/**
 * Our quotes checked by tpm2_checkquote (tpm2-tools), an independent
 * verifier: what our client produces is a standard quote, not one only our
 * own verifier understands. (The other direction, verifyQuote on quotes made
 * by tpm2_quote, is in quote-verifier.test.ts.)
 */
import test from "ava";
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import { withTransient } from "../../tpm/client/scoped.js";
import { Tpm } from "../../tpm/client/tpm.js";
import { createAk } from "../../tpm/keys/ak.js";
import { publicKeyFromTpmt } from "../../tpm/keys/public-key.js";
import { encode } from "../../tpm/marshal/writer.js";
import { quote } from "../../tpm/quote.js";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { TpmlPcrSelection } from "../../tpm/spec/pcr.js";
import { quotePolicyForValues } from "../../tpm/verify/quote-policy.js";
import { verifyQuote } from "../../tpm/verify/quote-verifier.js";
import { ToolError, Tpm2Tools } from "./tpm2-tools.js";
import { startProvisionedSwtpm } from "./swtpm-fixture.js";

test("tpm2_checkquote and verifyQuote both accept a quote made by our client, and both refuse it with another nonce or other PCR values", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  const tpm = new Tpm(await f.connect());
  const selection = TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [0, 1, 2, 3, 7]);
  const nonce = randomBytes(32);
  const { q, akPem, akPublic, pcrs } = await withTransient(
    tpm,
    () => createAk(tpm),
    async (ak) => {
      const q = await quote(tpm, ak, { pcrs: selection, extraData: nonce });
      const pcrs = (await tpm.pcrRead(selection)).values;
      const akPem = publicKeyFromTpmt(ak.publicArea).export({ type: "spki", format: "pem" }) as string;
      return { q, akPem, akPublic: ak.publicArea, pcrs };
    },
  );
  t.deepEqual(await f.leftoverHandles(), [], "our client flushed the AK");

  const tools = new Tpm2Tools(f.tcti, f.workDir);
  await fs.writeFile(tools.path("ak.pem"), akPem);
  await fs.writeFile(tools.path("ours.msg"), q.attestBytes);
  await fs.writeFile(
    tools.path("ours.sig"),
    encode((w) => q.signature.marshal(w)),
  );
  await fs.writeFile(tools.path("ours.pcrs"), Buffer.concat(pcrs.map((v) => v.digest)));
  await fs.writeFile(
    tools.path("changed.pcrs"),
    Buffer.concat(pcrs.map((v, i) => (i === 4 ? randomBytes(32) : v.digest))),
  );
  const check = (nonceHex: string, pcrFile: string) =>
    tools.run("tpm2_checkquote", [
      ...["-u", "ak.pem", "-m", "ours.msg", "-s", "ours.sig", "-g", "sha256"],
      ...["-f", pcrFile, "-l", "sha256:0,1,2,3,7", "-q", nonceHex],
    ]);

  await t.notThrowsAsync(check(nonce.toString("hex"), "ours.pcrs"));
  const values = pcrs.map((v) => ({ hashAlg: v.hash, pcr: v.pcr, value: v.digest }));
  const ours = {
    attestBytes: q.attestBytes,
    signature: encode((w) => q.signature.marshal(w)),
    akPublic,
    expectedNonce: nonce,
    pcrValues: values,
    policy: quotePolicyForValues(values, {
      hashAlg: "sha256",
      signatureScheme: "ecdsa",
      firmwareVersionMin: "00000000.00000000",
    }),
  } as const;
  t.true(verifyQuote(ours).ok, "our verifier agrees");
  t.false(verifyQuote({ ...ours, expectedNonce: randomBytes(32) }).ok);
  const changed = values.map((v, i) => (i === 4 ? { ...v, value: new Uint8Array(randomBytes(32)) } : v));
  t.false(verifyQuote({ ...ours, pcrValues: changed }).ok);
  await t.throwsAsync(
    check(randomBytes(32).toString("hex"), "ours.pcrs"),
    { instanceOf: ToolError },
    "other nonce",
  );
  await t.throwsAsync(
    check(nonce.toString("hex"), "changed.pcrs"),
    { instanceOf: ToolError },
    "other PCR values",
  );
});
