/**
 * No leaks: swtpm has no resource manager, so anything not flushed stays
 * until restart (three objects already exhaust it). Every failure path here
 * must still leave no transient object and no session behind.
 */
import test from "ava";
import { randomBytes } from "node:crypto";
import { activateCredential } from "../../tpm/activate-credential.js";
import { withSession, withTransient } from "../../tpm/client/scoped.js";
import { TpmError } from "../../tpm/client/tpm-error.js";
import { makeCredential } from "../../tpm/credential/make-credential.js";
import { createAk } from "../../tpm/keys/ak.js";
import { createEk } from "../../tpm/keys/ek.js";
import { createStoragePrimary } from "../../tpm/keys/storage.js";
import { sealSecret, unsealSecret } from "../../tpm/seal/seal.js";
import { TpmtHa } from "../../tpm/spec/basic.js";
import { TpmDecodeError } from "../../tpm/marshal/decode-error.js";
import { Tpm } from "../../tpm/client/tpm.js";
import { TPM_ALG_ID, TPM_CC } from "../../tpm/spec/constants.js";
import type { TpmTransport } from "../../tpm/transport/transport.js";
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

const PCRS = TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [16]);
// More failures than the TPM has object slots (3 on swtpm): a leak would show as TPM_RC_OBJECT_MEMORY.
const REPEATS = 5;

test.serial("control: objects that are not flushed do show up, and exhaust the TPM", async (t) => {
  const { tpm } = shared;
  const handles: number[] = [];
  try {
    const err = await t.throwsAsync(
      async () => {
        for (let i = 0; i < 8; i++) handles.push((await createStoragePrimary(tpm)).handle);
      },
      { instanceOf: TpmError },
    );
    t.is(err?.baseCode, TPM_RC.OBJECT_MEMORY);
    t.deepEqual((await leftovers(tpm)).transient, handles);
  } finally {
    for (const h of handles) await tpm.flushContext(h);
  }
  t.deepEqual(await leftovers(tpm), NO_LEFTOVERS);
});

test.serial(
  "a policy failure in the middle of unseal flushes the primary, the object and the session",
  async (t) => {
    const { tpm } = shared;
    const blob = await sealSecret(tpm, { secret: new Uint8Array(randomBytes(32)), pcrs: PCRS });
    await tpm.pcrExtend(16, [new TpmtHa(TPM_ALG_ID.SHA256, new Uint8Array(32))]);
    for (let i = 0; i < REPEATS; i++) {
      const err = await t.throwsAsync(unsealSecret(tpm, blob), { instanceOf: TpmError });
      t.is(err?.rc, 0x99d);
    }
    t.deepEqual(await leftovers(tpm), NO_LEFTOVERS);
  },
);

test.serial("a Load of a corrupted private area fails and still flushes its parent", async (t) => {
  const { tpm } = shared;
  const blob = await sealSecret(tpm, { secret: Uint8Array.of(1, 2, 3), pcrs: PCRS });
  const corrupt = Uint8Array.from(blob.outPrivate);
  corrupt[corrupt.length - 1]! ^= 0xff;
  for (let i = 0; i < REPEATS; i++) {
    await t.throwsAsync(unsealSecret(tpm, { ...blob, outPrivate: corrupt }), { instanceOf: TpmError });
  }
  t.deepEqual(await leftovers(tpm), NO_LEFTOVERS);
});

test.serial("a failed ActivateCredential flushes the EK and its policy session", async (t) => {
  const { tpm } = shared;
  await withTransient(tpm, createAk(tpm), async (ak) => {
    const ekPublic = await withTransient(tpm, createEk(tpm), async (ek) => ek.publicArea);
    const wrongName = Uint8Array.from(ak.name);
    wrongName[wrongName.length - 1]! ^= 1;
    const made = makeCredential({ ekPublic, akName: wrongName, credential: new Uint8Array(16) });
    for (let i = 0; i < REPEATS; i++) {
      const err = await t.throwsAsync(activateCredential(tpm, ak, made), { instanceOf: TpmError });
      t.is(err?.baseCode, TPM_RC.INTEGRITY);
    }
  });
  t.deepEqual(await leftovers(tpm), NO_LEFTOVERS);
});

test.serial("an exception thrown by our own code inside the scope still flushes", async (t) => {
  const { tpm } = shared;
  class Boom extends Error {}
  for (let i = 0; i < REPEATS; i++) {
    await t.throwsAsync(
      withTransient(tpm, createStoragePrimary(tpm), (srk) =>
        withSession(tpm, tpm.startAuthSession({ type: "hmac", saltKey: srk }), async () => {
          throw new Boom("not a TPM error");
        }),
      ),
      { instanceOf: Boom },
    );
  }
  t.deepEqual(await leftovers(tpm), NO_LEFTOVERS);
});

/**
 * Passes commands to the real swtpm, but spoils the first response parameter's
 * size field (to 0xffff) of successful responses to `commandCode`, as a bus
 * glitch or an interposer could: the TPM has created the object or session,
 * and our decoder refuses the response. (A mock of the corruption only.)
 */
class ResponseSpoilingTransport implements TpmTransport {
  constructor(
    private readonly inner: TpmTransport,
    private readonly commandCode: number,
  ) {}
  async send(command: Uint8Array): Promise<Uint8Array> {
    const cc = new DataView(command.buffer, command.byteOffset).getUint32(6);
    const response = Uint8Array.from(await this.inner.send(command));
    const view = new DataView(response.buffer);
    if (cc !== this.commandCode || view.getUint32(6) !== 0) return response;
    // After the header and one response handle; with sessions a parameterSize comes first.
    const at = view.getUint16(0) === 0x8002 ? 18 : 14;
    view.setUint16(at, 0xffff);
    return response;
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

test.serial(
  "mock-corrupted responses: a CreatePrimary, Load or StartAuthSession response that does not decode still flushes what the TPM made",
  async (t) => {
    const { tpm, recorder } = shared;
    const spoiled = (cc: number) => new Tpm(new ResponseSpoilingTransport(recorder, cc));
    for (let i = 0; i < REPEATS; i++) {
      await t.throwsAsync(createStoragePrimary(spoiled(TPM_CC.CreatePrimary)), {
        instanceOf: TpmDecodeError,
      });
      const blob = await sealSecret(tpm, { secret: Uint8Array.of(9), pcrs: PCRS });
      await withTransient(tpm, createStoragePrimary(tpm), async (srk) => {
        await t.throwsAsync(spoiled(TPM_CC.Load).load(srk, blob.outPrivate, blob.outPublic), {
          instanceOf: TpmDecodeError,
        });
        await t.throwsAsync(
          spoiled(TPM_CC.StartAuthSession).startAuthSession({ type: "hmac", saltKey: srk }),
          {
            instanceOf: TpmDecodeError,
          },
        );
      });
      t.deepEqual(await leftovers(tpm), NO_LEFTOVERS);
    }
  },
);

test.serial("after all failures the TPM still has room: a full seal/unseal works", async (t) => {
  const { tpm } = shared;
  const secret = new Uint8Array(randomBytes(32));
  t.deepEqual(await unsealSecret(tpm, await sealSecret(tpm, { secret, pcrs: PCRS })), secret);
  t.deepEqual(await leftovers(tpm), NO_LEFTOVERS);
});
