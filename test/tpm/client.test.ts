/**
 * The command client against a real swtpm: every command, errors decoded,
 * salted sessions with parameter encryption, and no handle left behind.
 */
import test from "ava";
import { X509Certificate, createHash, randomBytes, verify } from "node:crypto";
import { inspect } from "node:util";
import { activateCredential } from "../../tpm/activate-credential.js";
import { withSession, withTransient } from "../../tpm/client/scoped.js";
import { Tpm } from "../../tpm/client/tpm.js";
import { TpmClientError, TpmError } from "../../tpm/client/tpm-error.js";
import { makeCredential } from "../../tpm/credential/make-credential.js";
import { akName, createAk } from "../../tpm/keys/ak.js";
import {
  RSA_EK_CERT_NV_INDEX,
  RSA_EK_PERSISTENT_HANDLE,
  createEk,
  readEkCertificate,
  trimDerPadding,
  withEkPolicySession,
} from "../../tpm/keys/ek.js";
import { fixedWidth, publicKeyFromTpmt } from "../../tpm/keys/public-key.js";
import { createStoragePrimary } from "../../tpm/keys/storage.js";
import { EK_POLICY_SHA256, sealedObjectTemplate } from "../../tpm/keys/templates.js";
import { encode } from "../../tpm/marshal/writer.js";
import { quote } from "../../tpm/quote.js";
import { TpmtHa } from "../../tpm/spec/basic.js";
import {
  TPMA_OBJECT,
  TPM_ALG_ID,
  TPM_CC,
  TPM_GENERATED_VALUE,
  TPM_RH,
  TPM_ST,
} from "../../tpm/spec/constants.js";
import { nvName, objectName } from "../../tpm/spec/name.js";
import { TpmlPcrSelection } from "../../tpm/spec/pcr.js";
import { TPM_RC, decodeResponseCode } from "../../tpm/spec/response-codes.js";
import { TpmsSensitiveCreate } from "../../tpm/spec/sensitive.js";
import { TpmtPublic } from "../../tpm/spec/public.js";
import { PasswordSession } from "../../tpm/client/sessions.js";
import type { TpmTransport } from "../../tpm/transport/transport.js";
import { NO_LEFTOVERS, type TestTpm, leftovers, startFileTpm } from "./helpers-a.js";

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const contains = (haystack: Uint8Array, needle: Uint8Array): boolean =>
  Buffer.from(haystack).includes(Buffer.from(needle));

let shared: TestTpm & { stop(): Promise<void> };

test.before(async () => {
  shared = await startFileTpm();
});
test.after.always(async () => {
  await shared?.stop();
});

test.serial("Startup on a started TPM reports TPM_RC_INITIALIZE as 'already started'", async (t) => {
  t.false(await shared.tpm.startup());
});

test.serial(
  "GetRandom returns the requested length across several commands, different each time",
  async (t) => {
    const a = await shared.tpm.getRandom(100);
    const b = await shared.tpm.getRandom(100);
    t.is(a.length, 100);
    t.notDeepEqual(a, b);
    t.is((await shared.tpm.getRandom(0)).length, 0);
    await t.throwsAsync(shared.tpm.getRandom(-1), { instanceOf: TpmClientError });
  },
);

test.serial("concurrent callers are served one command at a time", async (t) => {
  const results = await Promise.all(Array.from({ length: 20 }, () => shared.tpm.getRandom(16)));
  t.is(new Set(results.map(hex)).size, 20);
});

test.serial("GetRandom through a session salted to the RSA EK is encrypted on the bus", async (t) => {
  const { tpm, recorder } = shared;
  const random = await withTransient(tpm, createEk(tpm), (ek) =>
    withSession(tpm, tpm.startAuthSession({ type: "hmac", saltKey: ek }), async (session) => {
      t.true(session.salted);
      recorder.clear();
      return tpm.getRandom(32, { encryptSession: session });
    }),
  );
  const responses = recorder
    .exchanges()
    .filter((e) => new DataView(e.command.buffer, e.command.byteOffset).getUint32(6) === TPM_CC.GetRandom)
    .map((e) => e.response!);
  t.is(responses.length, 1);
  t.false(contains(responses[0]!, random), "the plaintext random bytes must not appear in the raw response");
});

test.serial("PCR_Extend sets the PCR to H(old || digest) and bumps the update counter", async (t) => {
  const { tpm } = shared;
  // PCR 16 (debug) does not count in pcrUpdateCounter on PC-client TPMs; PCR 15 does.
  const sel = TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [15]);
  const before = await tpm.pcrRead(sel);
  const digest = new Uint8Array(randomBytes(32));
  await tpm.pcrExtend(15, [new TpmtHa(TPM_ALG_ID.SHA256, digest)]);
  const after = await tpm.pcrRead(sel);
  const expected = createHash("sha256").update(before.values[0]!.digest).update(digest).digest();
  t.is(hex(after.values[0]!.digest), expected.toString("hex"));
  t.true(after.updateCounter > before.updateCounter);
  await t.throwsAsync(tpm.pcrExtend(16, [new TpmtHa(TPM_ALG_ID.SHA256, new Uint8Array(20))]), {
    instanceOf: TpmClientError,
  });
});

test.serial(
  "PCR_Read of more than eight PCRs takes several commands and returns them all in order",
  async (t) => {
    const all = [...Array(24).keys()];
    const { values } = await shared.tpm.pcrRead(TpmlPcrSelection.of(TPM_ALG_ID.SHA256, all));
    t.deepEqual(
      values.map((v) => v.pcr),
      all,
    );
    t.true(values.every((v) => v.digest.length === 32));
  },
);

test.serial("CreatePrimary and ReadPublic agree on the name nameAlg || H(TPMT_PUBLIC)", async (t) => {
  const { tpm } = shared;
  await withTransient(tpm, createAk(tpm), async (ak) => {
    t.deepEqual(ak.name, objectName(ak.publicArea));
    t.deepEqual(akName(ak.publicArea), ak.name);
    const read = await tpm.readPublic(ak.handle);
    t.deepEqual(read.name, ak.name);
    t.deepEqual(
      encode((w) => read.publicArea.marshal(w)),
      encode((w) => ak.publicArea.marshal(w)),
    );
  });
  // Primaries are deterministic: the same template gives the same AK.
  const n1 = await withTransient(tpm, createAk(tpm), async (ak) => ak.name);
  const n2 = await withTransient(tpm, createAk(tpm), async (ak) => ak.name);
  t.deepEqual(n1, n2);
});

test.serial(
  "the default EK template gives the persistent EK, whose key is in the NV certificate",
  async (t) => {
    const { tpm } = shared;
    const persistent = await tpm.readPublic(RSA_EK_PERSISTENT_HANDLE);
    const der = await readEkCertificate(tpm);
    const cert = new X509Certificate(der);
    await withTransient(tpm, createEk(tpm), async (ek) => {
      t.deepEqual(ek.name, persistent.name);
      t.true(cert.publicKey.equals(publicKeyFromTpmt(ek.publicArea)));
    });
    const { nvPublic, name } = await tpm.nvReadPublic(RSA_EK_CERT_NV_INDEX);
    t.deepEqual(name, nvName(nvPublic));
    t.is(nvPublic.dataSize, der.length);
  },
);

test("EK certificate padding in NV is trimmed to the DER SEQUENCE; non-DER is refused", (t) => {
  const der = Uint8Array.of(0x30, 0x82, 0x00, 0x03, 1, 2, 3);
  t.deepEqual(trimDerPadding(Uint8Array.from([...der, 0, 0, 0xff]), 1), der);
  t.deepEqual(trimDerPadding(Uint8Array.of(0x30, 1, 9, 0), 1), Uint8Array.of(0x30, 1, 9));
  t.throws(() => trimDerPadding(der.subarray(0, 6), 1), { instanceOf: TpmClientError });
  t.throws(() => trimDerPadding(Uint8Array.of(0xff, 0xff), 1), { instanceOf: TpmClientError });
  t.throws(() => trimDerPadding(Uint8Array.of(0x30, 0x80), 1), { instanceOf: TpmClientError });
});

test.serial("Create and Load under a salted ECC session hide the sensitive data on the bus", async (t) => {
  const { tpm, recorder } = shared;
  const data = new Uint8Array(randomBytes(32));
  await withTransient(tpm, createStoragePrimary(tpm), (srk) =>
    withSession(tpm, tpm.startAuthSession({ type: "hmac", saltKey: srk }), async (session) => {
      recorder.clear();
      const created = await tpm.create(srk, sealedObjectTemplate(new Uint8Array(32)), {
        sensitive: new TpmsSensitiveCreate(new Uint8Array(0), data),
        parentAuth: session,
        encryptSensitive: true,
      });
      t.false(contains(recorder.exchanges()[0]!.command, data));
      await withTransient(tpm, tpm.load(srk, created.outPrivate, created.outPublic, session), async (obj) => {
        t.deepEqual(obj.name, objectName(created.outPublic));
      });
    }),
  );
});

test.serial(
  "an HMAC session proves an object's authValue, which joins the HMAC and encryption keys",
  async (t) => {
    const { tpm, recorder } = shared;
    const data = new Uint8Array(randomBytes(32));
    const password = new Uint8Array(randomBytes(16));
    password[15] = 7; // no trailing zero: the TPM would strip it
    const template = sealedObjectTemplate(new Uint8Array(0));
    const withAuth = new TpmtPublic(
      template.nameAlg,
      // noDA: the deliberate wrong password below must not count towards a dictionary-attack lockout.
      template.objectAttributes | TPMA_OBJECT.userWithAuth | TPMA_OBJECT.noDA,
      template.authPolicy,
      template.parameters,
      template.unique,
    );
    await withTransient(tpm, createStoragePrimary(tpm), async (srk) => {
      const created = await tpm.create(srk, withAuth, { sensitive: new TpmsSensitiveCreate(password, data) });
      await withTransient(tpm, tpm.load(srk, created.outPrivate, created.outPublic), (item) =>
        withSession(tpm, tpm.startAuthSession({ type: "hmac", saltKey: srk }), async (session) => {
          recorder.clear();
          const out = await tpm.unseal(item, session, { encryptResponse: true, entityAuth: password });
          t.deepEqual(out, data);
          t.false(
            recorder.exchanges().some((e) => contains(e.response!, data) || contains(e.command, password)),
          );
          const wrong = Uint8Array.from(password);
          wrong[0]! ^= 1;
          const err = await t.throwsAsync(tpm.unseal(item, session, { entityAuth: wrong }), {
            instanceOf: TpmError,
          });
          // BAD_AUTH rather than AUTH_FAIL: the object is noDA.
          t.is(err?.rcText, "TPM_RC_BAD_AUTH (session 1)");
          // The plain password session works too (and shows the password on the bus).
          t.deepEqual(await tpm.unseal(item, new PasswordSession(password)), data);
        }),
      );
    });
  },
);

test.serial("a bad handle fails with a decoded format-1 handle error", async (t) => {
  // A transient handle that is not loaded: libtpms answers TPM_RC_VALUE on handle 1 (0x184).
  const err = await t.throwsAsync(shared.tpm.readPublic(0x80000010), { instanceOf: TpmError });
  t.is(err?.rc, 0x184);
  t.is(err?.baseCode, TPM_RC.VALUE);
  t.is(err?.rcText, "TPM_RC_VALUE (handle 1)");
  t.is(decodeResponseCode(err!.rc).handle, 1);
  // A session handle that is not loaded is a warning naming the handle slot.
  const err2 = await t.throwsAsync(
    shared.tpm.execute({ commandCode: TPM_CC.PolicyGetDigest, handles: [0x03000005] }),
    { instanceOf: TpmError },
  );
  t.is(err2?.rcName, "TPM_RC_REFERENCE_H0");
  // Quote with a key that cannot sign: an error on handle 1.
  const { tpm } = shared;
  const err3 = await withTransient(tpm, createStoragePrimary(tpm), (srk) =>
    t.throwsAsync(tpm.quote(srk, new Uint8Array(0), TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [0])), {
      instanceOf: TpmError,
    }),
  );
  t.is(err3?.rcText, "TPM_RC_KEY (handle 1)");
  t.like(decodeResponseCode(err3!.rc), { format: 1, handle: 1 });
});

test.serial("a session logs as its handle only, never its key or nonces", async (t) => {
  const { tpm } = shared;
  await withTransient(tpm, createStoragePrimary(tpm), (srk) =>
    withSession(tpm, tpm.startAuthSession({ type: "hmac", saltKey: srk }), async (session) => {
      t.regex(
        inspect(session, { showHidden: true, depth: 5 }),
        /^TpmSession\(0x2[0-9a-f]{6}, hmac, salted\)$/,
      );
      t.deepEqual(Object.keys(JSON.parse(JSON.stringify(session))).sort(), ["handle", "salted", "type"]);
    }),
  );
});

test.serial("a session cannot be used after it was flushed", async (t) => {
  const { tpm } = shared;
  const session = await tpm.startAuthSession({ type: "policy" });
  await tpm.flushSession(session);
  await t.throwsAsync(
    tpm.unseal({ handle: 0x80000000, name: new Uint8Array(34), publicArea: undefined as never }, session),
    {
      instanceOf: TpmClientError,
      message: /flushed/,
    },
  );
});

test.serial(
  "Quote: signature verifies, attest carries magic, signer, extraData and the PCR digest",
  async (t) => {
    const { tpm } = shared;
    const pcrs = TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [0, 7, 16]);
    const extraData = new Uint8Array(randomBytes(32));
    await withTransient(tpm, createAk(tpm), async (ak) => {
      const q = await quote(tpm, ak, { pcrs, extraData });
      const { values } = await tpm.pcrRead(pcrs);
      t.is(q.attest.magic, TPM_GENERATED_VALUE);
      t.is(q.attest.type, TPM_ST.ATTEST_QUOTE);
      t.deepEqual(q.attest.qualifiedSigner.length, 34);
      t.deepEqual(q.attest.extraData, extraData);
      const pcrDigest = createHash("sha256");
      for (const v of values) pcrDigest.update(v.digest);
      t.is(hex(q.attest.quote().pcrDigest), pcrDigest.digest("hex"));
      const sig = q.signature.ecdsa();
      const p1363 = Buffer.concat([fixedWidth(sig.signatureR, 32), fixedWidth(sig.signatureS, 32)]);
      const key = { key: publicKeyFromTpmt(ak.publicArea), dsaEncoding: "ieee-p1363" as const };
      t.true(verify("sha256", q.attestBytes, key, p1363));
      const tampered = Uint8Array.from(q.attestBytes);
      tampered[tampered.length - 1]! ^= 1;
      t.false(verify("sha256", tampered, key, p1363));
    });
  },
);

test.serial("a PolicySecret(endorsement) session reaches the default EK policy digest", async (t) => {
  const digest = await withEkPolicySession(shared.tpm, (s) => shared.tpm.policyGetDigest(s));
  t.deepEqual(digest, EK_POLICY_SHA256);
});

test.serial("ActivateCredential releases a MakeCredential secret for the right AK only", async (t) => {
  const { tpm } = shared;
  const credential = new Uint8Array(randomBytes(32));
  await withTransient(tpm, createEk(tpm), (ek) =>
    withTransient(tpm, createAk(tpm), async (ak) => {
      const made = makeCredential({ ekPublic: ek.publicArea, akName: ak.name, credential });
      t.deepEqual(await activateCredential(tpm, ak, made), credential);
      const wrongName = Uint8Array.from(ak.name);
      wrongName[5]! ^= 1;
      const other = makeCredential({ ekPublic: ek.publicArea, akName: wrongName, credential });
      const err = await t.throwsAsync(activateCredential(tpm, ak, other, ek), { instanceOf: TpmError });
      t.is(err?.baseCode, TPM_RC.INTEGRITY);
      t.is(err?.rcText, "TPM_RC_INTEGRITY (parameter 1)");
    }),
  );
});

test.serial(
  "a tampered response (tampering wrapper around the real swtpm) fails the response HMAC",
  async (t) => {
    const { tpm: real } = shared;
    let tamper = false;
    const tampering: TpmTransport = {
      async send(command) {
        const response = Uint8Array.from(await real.transport.send(command));
        // Flip a bit in the first response parameter byte after the header and parameterSize.
        if (tamper) response[16]! ^= 1;
        return response;
      },
      close: async () => undefined,
    };
    const tpm = new Tpm(tampering);
    await withTransient(tpm, createStoragePrimary(tpm), (srk) =>
      withSession(tpm, tpm.startAuthSession({ type: "hmac", saltKey: srk }), async (session) => {
        tamper = true;
        const err = await t.throwsAsync(tpm.getRandom(16, { encryptSession: session }), {
          instanceOf: TpmClientError,
        });
        tamper = false;
        t.is(err?.code, "RESPONSE_HMAC");
      }),
    );
  },
);

test.serial("after all of the above no transient object or session is left in the TPM", async (t) => {
  t.deepEqual(await leftovers(shared.tpm), NO_LEFTOVERS);
  // The persistent EKs that swtpm_setup made (RSA 0x81010001, ECC 0x81010016) are untouched.
  t.deepEqual(await shared.tpm.getHandles(0x81000000), [RSA_EK_PERSISTENT_HANDLE, 0x81010016]);
});

test.serial(
  "nvReadAll refuses a chunk size that cannot make progress, before sending anything; small chunks read the same bytes",
  async (t) => {
    t.timeout(10_000); // before the check, chunkBytes 0 read zero bytes forever
    const { tpm, recorder } = shared;
    const whole = await tpm.nvReadAll(RSA_EK_CERT_NV_INDEX, TPM_RH.OWNER);
    const sent = recorder.exchanges().length;
    for (const chunkBytes of [0, -1, 0.5, Number.NaN, 1_000_000]) {
      const err = await t.throwsAsync(tpm.nvReadAll(RSA_EK_CERT_NV_INDEX, TPM_RH.OWNER, { chunkBytes }), {
        instanceOf: TpmClientError,
      });
      t.is(err?.code, "BAD_ARGUMENT", String(chunkBytes));
    }
    t.is(recorder.exchanges().length, sent, "nothing was sent for a refused chunk size");
    t.deepEqual(await tpm.nvReadAll(RSA_EK_CERT_NV_INDEX, TPM_RH.OWNER, { chunkBytes: 100 }), whole);
  },
);
