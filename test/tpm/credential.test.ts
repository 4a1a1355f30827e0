/**
 * MakeCredential (ours, in TypeScript) against TPM2_ActivateCredential on
 * swtpm, both ways across an independent stack (tpm2-tools).
 */
import test from "ava";
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import { activateCredential } from "../../tpm/activate-credential.js";
import { withTransient } from "../../tpm/client/scoped.js";
import { Tpm } from "../../tpm/client/tpm.js";
import { TpmError } from "../../tpm/client/tpm-error.js";
import { CredentialError, makeCredential } from "../../tpm/credential/make-credential.js";
import {
  decodeTpm2ToolsCredential,
  encodeTpm2ToolsCredential,
} from "../../tpm/credential/tpm2-tools-credential-file.js";
import { createAk } from "../../tpm/keys/ak.js";
import { createEk } from "../../tpm/keys/ek.js";
import { eccAkTemplate } from "../../tpm/keys/templates.js";
import { encode } from "../../tpm/marshal/writer.js";
import { objectName } from "../../tpm/spec/name.js";
import { Tpm2bPublic } from "../../tpm/spec/public.js";
import { TPM_RC } from "../../tpm/spec/response-codes.js";
import { startProvisionedSwtpm } from "./swtpm-fixture.js";
import { Tpm2Tools } from "./tpm2-tools.js";

test("tpm2_activatecredential releases a credential made by our MakeCredential for its AK", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  const tools = new Tpm2Tools(f.tcti, f.workDir);
  const { ekPublic, akPublic } = await tools.createEkAndAk();
  const credential = randomBytes(32);
  const made = makeCredential({ ekPublic, akName: objectName(akPublic), credential });
  await fs.writeFile(tools.path("ours.cred"), encodeTpm2ToolsCredential(made.credentialBlob, made.secret));
  t.deepEqual(Buffer.from(await tools.activateCredential("ours.cred")), credential);
  t.deepEqual(await f.leftoverHandles(), []);
});

test("our ActivateCredential releases a credential made by tpm2_makecredential, and leaves no handle behind", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  const tpm = new Tpm(await f.connect());
  const secret = randomBytes(24);
  const ek = await withTransient(
    tpm,
    () => createEk(tpm),
    async (o) => o.publicArea,
  );
  await fs.writeFile(
    f.workDir + "/ek.tss.pub",
    encode((w) => new Tpm2bPublic(ek).marshal(w)),
  );
  const got = await withTransient(
    tpm,
    () => createAk(tpm),
    async (ak) => {
      const tools = new Tpm2Tools(f.tcti, f.workDir); // offline (-T none): no second connection to swtpm
      const file = await tools.makeCredential("ek.tss.pub", ak.name, secret);
      return activateCredential(tpm, ak, decodeTpm2ToolsCredential(file));
    },
  );
  t.deepEqual(Buffer.from(got), secret);
  t.deepEqual(await f.leftoverHandles(), []);
});

test("our MakeCredential and ActivateCredential round-trip; a blob bound to another AK name fails with TPM_RC_INTEGRITY", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  const tpm = new Tpm(await f.connect());
  const ekPublic = await withTransient(
    tpm,
    () => createEk(tpm),
    async (o) => o.publicArea,
  );
  await withTransient(
    tpm,
    () => createAk(tpm),
    async (ak) => {
      const credential = randomBytes(32);
      const good = makeCredential({ ekPublic, akName: ak.name, credential });
      t.deepEqual(Buffer.from(await activateCredential(tpm, ak, good)), credential);

      const otherName = Uint8Array.from(ak.name);
      otherName[5]! ^= 0xff;
      const wrong = makeCredential({ ekPublic, akName: otherName, credential });
      const err = await t.throwsAsync(activateCredential(tpm, ak, wrong), { instanceOf: TpmError });
      t.is(err?.baseCode, TPM_RC.INTEGRITY);
    },
  );
  t.deepEqual(await f.leftoverHandles(), []);
});

test("makeCredential refuses bad credentials, AK names and EKs; with a fixed seed its TPM2B layout is deterministic", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  const tpm = new Tpm(await f.connect());
  const ekPublic = await withTransient(
    tpm,
    () => createEk(tpm),
    async (o) => o.publicArea,
  );
  const akName = Uint8Array.from([0x00, 0x0b, ...new Uint8Array(32)]);
  const cases: [string, () => unknown, CredentialError["code"]][] = [
    ["long", () => makeCredential({ ekPublic, akName, credential: new Uint8Array(33) }), "bad-credential"],
    ["empty", () => makeCredential({ ekPublic, akName, credential: new Uint8Array(0) }), "bad-credential"],
    [
      "name",
      () => makeCredential({ ekPublic, akName: akName.subarray(0, 20), credential: new Uint8Array(8) }),
      "bad-ak-name",
    ],
    [
      "ak as ek",
      () => makeCredential({ ekPublic: eccAkTemplate(), akName, credential: new Uint8Array(8) }),
      "unsupported-ek",
    ],
  ];
  for (const [what, fn, code] of cases) {
    const e = t.throws(fn, { instanceOf: CredentialError }, what);
    t.is(e?.code, code, what);
  }
  const a = makeCredential({
    ekPublic,
    akName,
    credential: new Uint8Array(8),
    seedForTest: new Uint8Array(32),
  });
  const b = makeCredential({
    ekPublic,
    akName,
    credential: new Uint8Array(8),
    seedForTest: new Uint8Array(32),
  });
  t.deepEqual(a.idObjectBytes, b.idObjectBytes, "same seed, same blob");
  const view = Buffer.from(a.idObjectBytes);
  t.is(view.readUInt16BE(0), view.length - 2);
  t.is(view.readUInt16BE(2), 32, "integrity HMAC is a SHA-256 TPM2B_DIGEST");
  t.is(view.length - 2 - 2 - 32, 2 + 8, "encIdentity is the encrypted TPM2B_DIGEST of the credential");
  t.is(Buffer.from(a.encryptedSecretBytes).readUInt16BE(0), 256, "the seed is encrypted to the 2048-bit EK");
});
