/**
 * Sealing to PCRs on a real swtpm: the software policy digest matches the
 * TPM's, unseal works while the PCRs are unchanged and fails with the TPM's
 * policy error after PCR_Extend, and the secret never crosses the bus in clear.
 */
import test from "ava";
import { randomBytes } from "node:crypto";
import { withSession, withTransient } from "../../tpm/client/scoped.js";
import { TpmClientError, TpmError } from "../../tpm/client/tpm-error.js";
import { createEk } from "../../tpm/keys/ek.js";
import { createStoragePrimary } from "../../tpm/keys/storage.js";
import { TpmDecodeError } from "../../tpm/marshal/decode-error.js";
import { policyPcrDigest } from "../../tpm/seal/pcr-policy.js";
import { decodeSealedBlob, encodeSealedBlob, sealSecret, unsealSecret } from "../../tpm/seal/seal.js";
import { TpmtHa } from "../../tpm/spec/basic.js";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { TpmlPcrSelection } from "../../tpm/spec/pcr.js";
import { TPM_RC } from "../../tpm/spec/response-codes.js";
import { NO_LEFTOVERS, leftovers, startFileTpm } from "./helpers-a.js";

type FileTpm = Awaited<ReturnType<typeof startFileTpm>>;
let shared: FileTpm;
test.before(async () => {
  shared = await startFileTpm();
});
test.after.always(async () => {
  await shared?.stop();
});

const PCRS = TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [0, 7, 16]);
const contains = (haystack: Uint8Array, needle: Uint8Array): boolean =>
  Buffer.from(haystack).includes(Buffer.from(needle));

test.serial("the PolicyPCR digest computed in software equals the TPM's PolicyGetDigest", async (t) => {
  const { tpm } = shared;
  const { values } = await tpm.pcrRead(PCRS);
  const expected = policyPcrDigest(
    TPM_ALG_ID.SHA256,
    PCRS,
    values.map((v) => v.digest),
  );
  for (const type of ["trial", "policy"] as const) {
    const fromTpm = await withSession(tpm, tpm.startAuthSession({ type }), async (s) => {
      await tpm.policyPcr(s, PCRS);
      return tpm.policyGetDigest(s);
    });
    t.deepEqual(fromTpm, expected, type);
  }
  const blob = await sealSecret(tpm, { secret: Uint8Array.of(1), pcrs: PCRS });
  t.deepEqual(blob.outPublic.authPolicy, expected);
  // A different PCR selection gives a different digest.
  const other = TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [0, 7]);
  t.notDeepEqual(
    policyPcrDigest(
      TPM_ALG_ID.SHA256,
      other,
      values.slice(0, 2).map((v) => v.digest),
    ),
    expected,
  );
});

test.serial("unseal returns the secret, and no raw response or command carries it", async (t) => {
  const { tpm, recorder } = shared;
  const secret = new Uint8Array(randomBytes(32));
  recorder.clear();
  const blob = await sealSecret(tpm, { secret, pcrs: PCRS });
  const unsealed = await unsealSecret(tpm, blob);
  t.deepEqual(unsealed, secret);
  const exchanges = recorder.exchanges();
  t.true(exchanges.length > 5);
  for (const e of exchanges) {
    t.false(contains(e.response!, secret), "a response carries the secret in clear");
    t.false(contains(e.command, secret), "a command carries the secret in clear");
  }
});

test.serial("control: an unsalted, unencrypted unseal does show the secret on the bus", async (t) => {
  // Shows that the search above can find the secret: without a salted, encrypting session it is there.
  const { tpm, recorder } = shared;
  const secret = new Uint8Array(randomBytes(32));
  const blob = await sealSecret(tpm, { secret, pcrs: PCRS });
  recorder.clear();
  const unsealed = await withTransient(tpm, createStoragePrimary(tpm), (srk) =>
    withTransient(tpm, tpm.load(srk, blob.outPrivate, blob.outPublic), (item) =>
      withSession(tpm, tpm.startAuthSession({ type: "policy" }), async (session) => {
        await tpm.policyPcr(session, blob.pcrs);
        // Asking an unsalted session to encrypt is refused on our side.
        await t.throwsAsync(tpm.unseal(item, session, { encryptResponse: true }), {
          instanceOf: TpmClientError,
        });
        return tpm.unseal(item, session);
      }),
    ),
  );
  t.deepEqual(unsealed, secret);
  t.true(recorder.exchanges().some((e) => contains(e.response!, secret)));
});

test.serial("a session salted to the RSA EK also unseals", async (t) => {
  const { tpm } = shared;
  const secret = new Uint8Array(randomBytes(32));
  const blob = await sealSecret(tpm, { secret, pcrs: PCRS });
  const out = await withTransient(tpm, createEk(tpm), (ek) => unsealSecret(tpm, blob, { saltKey: ek }));
  t.deepEqual(out, secret);
});

test.serial(
  "a sealed blob survives encoding, and a corrupt one is refused with TpmDecodeError",
  async (t) => {
    const { tpm } = shared;
    const secret = new Uint8Array(randomBytes(32));
    const bytes = encodeSealedBlob(await sealSecret(tpm, { secret, pcrs: PCRS }));
    t.deepEqual(await unsealSecret(tpm, decodeSealedBlob(bytes)), secret);
    t.throws(() => decodeSealedBlob(bytes.subarray(0, bytes.length - 1)), { instanceOf: TpmDecodeError });
    t.throws(() => decodeSealedBlob(Uint8Array.from([...bytes, 0])), { instanceOf: TpmDecodeError });
    await t.throwsAsync(sealSecret(tpm, { secret: new Uint8Array(0), pcrs: PCRS }), {
      instanceOf: TpmClientError,
    });
    await t.throwsAsync(sealSecret(tpm, { secret: new Uint8Array(129), pcrs: PCRS }), {
      instanceOf: TpmClientError,
    });
  },
);

test.serial(
  "after PCR_Extend unseal fails with TPM_RC_POLICY_FAIL (0x99d) and leaves nothing behind",
  async (t) => {
    const { tpm } = shared;
    const secret = new Uint8Array(randomBytes(32));
    const blob = await sealSecret(tpm, { secret, pcrs: PCRS });
    t.deepEqual(await unsealSecret(tpm, blob), secret);
    await tpm.pcrExtend(16, [new TpmtHa(TPM_ALG_ID.SHA256, new Uint8Array(randomBytes(32)))]);
    const err = await t.throwsAsync(unsealSecret(tpm, blob), { instanceOf: TpmError });
    t.is(err?.rc, 0x99d);
    t.is(err?.baseCode, TPM_RC.POLICY_FAIL);
    t.is(err?.rcName, "TPM_RC_POLICY_FAIL");
    t.is(err?.rcText, "TPM_RC_POLICY_FAIL (session 1)");
    t.false(err!.message.includes(Buffer.from(secret).toString("hex")));
    t.deepEqual(await leftovers(tpm), NO_LEFTOVERS);
    // Sealing again to the new PCR values works.
    const again = await sealSecret(tpm, { secret, pcrs: PCRS });
    t.deepEqual(await unsealSecret(tpm, again), secret);
  },
);

test.serial(
  "concurrent seals and unseals on one TPM take turns and never run out of object memory",
  async (t) => {
    // Each unseal holds two objects and a session; swtpm has three object slots.
    const { tpm } = shared;
    const secrets = Array.from({ length: 4 }, () => new Uint8Array(randomBytes(32)));
    const blobs = await Promise.all(secrets.map((secret) => sealSecret(tpm, { secret, pcrs: PCRS })));
    const outs = await Promise.all([
      ...blobs.map((b) => unsealSecret(tpm, b)),
      ...blobs.map((b) => tpm.exclusive(() => unsealSecret(tpm, b))), // re-entrant
    ]);
    t.deepEqual(outs, [...secrets, ...secrets]);
    t.deepEqual(await leftovers(tpm), NO_LEFTOVERS);
  },
);

test.serial("no transient object or session is left after the seal tests", async (t) => {
  t.deepEqual(await leftovers(shared.tpm), NO_LEFTOVERS);
});
