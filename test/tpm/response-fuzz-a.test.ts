/**
 * Hostile responses never crash the client: real swtpm responses, recorded,
 * then replayed mutated by a mock transport (a TPM cannot be made to send
 * them). Every outcome is a success or one of the typed errors.
 */
import test from "ava";
import fc from "fast-check";
import { Tpm, type TpmObject } from "../../tpm/client/tpm.js";
import { TpmClientError, TpmError } from "../../tpm/client/tpm-error.js";
import { createAk } from "../../tpm/keys/ak.js";
import { RSA_EK_CERT_NV_INDEX, RSA_EK_PERSISTENT_HANDLE, createEk } from "../../tpm/keys/ek.js";
import { TpmKeyError } from "../../tpm/keys/public-key.js";
import { TpmDecodeError } from "../../tpm/marshal/decode-error.js";
import { TPM_ALG_ID, TPM_CAP } from "../../tpm/spec/constants.js";
import { TpmlPcrSelection } from "../../tpm/spec/pcr.js";
import type { TpmTransport } from "../../tpm/transport/transport.js";
import { startTestTpm } from "./helpers-a.js";

type Op = (tpm: Tpm) => Promise<unknown>;

const TYPED = [TpmDecodeError, TpmClientError, TpmError, TpmKeyError];

/** A mock transport that answers with canned responses, in order. */
class ReplayTransport implements TpmTransport {
  private next = 0;
  constructor(private readonly responses: readonly Uint8Array[]) {}
  async send(): Promise<Uint8Array> {
    const r = this.responses[this.next++];
    if (r === undefined) throw new TpmClientError("BAD_RESPONSE", "replay ran out of responses");
    return r;
  }
  async close(): Promise<void> {}
}

test("mock transport replaying mutated swtpm responses: the client only ever throws typed errors", async (t) => {
  const { tpm, recorder } = await startTestTpm(t, { identity: "shared" });
  const ak: TpmObject = await createAk(tpm);
  const ek: TpmObject = await createEk(tpm);
  const ops: Record<string, Op> = {
    getRandom: (c) => c.getRandom(40),
    getCapability: (c) => c.getCapability(TPM_CAP.TPM_PROPERTIES, 0x100, 16),
    getHandles: (c) => c.getHandles(0x81000000),
    pcrRead: (c) => c.pcrRead(TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [...Array(12).keys()])),
    readPublic: (c) => c.readPublic(RSA_EK_PERSISTENT_HANDLE),
    nvReadPublic: (c) => c.nvReadPublic(RSA_EK_CERT_NV_INDEX),
    createPrimary: (c) => createAk(c),
    quote: (c) => c.quote(ak, Uint8Array.of(1, 2, 3), TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [0, 7])),
    saltedSession: (c) => c.startAuthSession({ type: "hmac", saltKey: ek }),
  };
  const recorded = new Map<string, Uint8Array[]>();
  for (const [name, op] of Object.entries(ops)) {
    recorder.clear();
    const result = await op(tpm);
    // Objects and sessions made while recording are flushed at once.
    if (name === "createPrimary" || name === "saltedSession")
      await tpm.flushContext((result as { handle: number }).handle);
    recorded.set(
      name,
      recorder
        .exchanges()
        .slice(0, name === "createPrimary" || name === "saltedSession" ? 1 : undefined)
        .map((e) => e.response!),
    );
  }
  await tpm.flushContext(ak.handle);
  await tpm.flushContext(ek.handle);

  let outcomes = 0;
  for (const [name, op] of Object.entries(ops)) {
    const responses = recorded.get(name)!;
    // The unmutated replay succeeds: the harness itself is sound.
    await t.notThrowsAsync(op(new Tpm(new ReplayTransport(responses))), name);
    const mutation = fc.record({
      which: fc.nat({ max: responses.length - 1 }),
      edits: fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), {
        minLength: 1,
        maxLength: 3,
      }),
      cut: fc.option(fc.nat(), { nil: undefined }),
    });
    await fc.assert(
      fc.asyncProperty(mutation, async ({ which, edits, cut }) => {
        const copy = responses.map((r) => Uint8Array.from(r));
        let r = copy[which]!;
        for (const e of edits) r[e.at % r.length] = e.value;
        if (cut !== undefined) r = r.subarray(0, cut % (r.length + 1));
        copy[which] = r;
        try {
          await op(new Tpm(new ReplayTransport(copy)));
        } catch (err) {
          if (!TYPED.some((cls) => err instanceof cls)) throw new Error(`${name}: untyped ${String(err)}`);
        }
        outcomes++;
      }),
      { numRuns: 150 },
    );
  }
  t.true(outcomes >= 150 * Object.keys(ops).length);
});
