/**
 * An active attacker on the TPM bus (simulated: a mock interposer between our
 * client and a real swtpm). The storage primary's public key arrives in a
 * CreatePrimary response that nothing authenticates; if the interposer swaps
 * in its own key, the unseal session is salted to the attacker, who then
 * relays the session to the real TPM and reads the secret in clear (the
 * attack systemd answers by pinning the SRK). Unseal must compare the primary
 * with the one the blob was sealed under and refuse before salting to it.
 */
import test from "ava";
import { createECDH, createHmac, randomBytes } from "node:crypto";
import { cfbDecrypt, cfbEncrypt } from "../../tpm/client/param-crypto.js";
import { TpmClientError } from "../../tpm/client/tpm-error.js";
import { Tpm } from "../../tpm/client/tpm.js";
import { kdfa, kdfe } from "../../tpm/crypto/kdf.js";
import { TpmReader } from "../../tpm/marshal/reader.js";
import { encode } from "../../tpm/marshal/writer.js";
import { decodeSealedBlob, encodeSealedBlob, sealSecret, unsealSecret } from "../../tpm/seal/seal.js";
import { TPM_ALG_ID, TPM_CC, TPM_RH } from "../../tpm/spec/constants.js";
import { objectName, tpmHash } from "../../tpm/spec/name.js";
import { TpmlPcrSelection } from "../../tpm/spec/pcr.js";
import { Tpm2bPublic } from "../../tpm/spec/public.js";
import { TpmtSymDef } from "../../tpm/spec/schemes.js";
import type { TpmTransport } from "../../tpm/transport/transport.js";
import { NO_LEFTOVERS, leftovers, startTestTpm } from "./helpers-a.js";

const u16 = (b: Uint8Array, at: number): number => (b[at]! << 8) | b[at + 1]!;
const u32 = (b: Uint8Array, at: number): number => new DataView(b.buffer, b.byteOffset).getUint32(at);
const tpm2bAt = (b: Uint8Array, at: number): Uint8Array => b.subarray(at + 2, at + 2 + u16(b, at));

/** Swaps the owner primary's key for its own, man-in-the-middles salted sessions, reads unsealed data. */
class Interposer implements TpmTransport {
  private readonly attacker = createECDH("prime256v1");
  private readonly attackerPoint: Buffer;
  private realPoint: { x: Uint8Array; y: Uint8Array } | undefined;
  private lastCc = 0;
  private lastCommand: Uint8Array = new Uint8Array(0);
  private salts: { toClient: Uint8Array; toTpm: Uint8Array; nonceCaller: Uint8Array } | undefined;
  private keys: { client: Uint8Array; tpm: Uint8Array; nonceTpm: Uint8Array } | undefined;
  private itemName = new Uint8Array(0);
  private realName: Uint8Array = new Uint8Array(0);
  learned: Uint8Array | undefined;

  constructor(private readonly inner: TpmTransport) {
    this.attackerPoint = this.attacker.generateKeys();
  }

  async send(command: Uint8Array): Promise<Uint8Array> {
    this.lastCc = u32(command, 6);
    let cmd: Uint8Array = Uint8Array.from(command);
    if (this.lastCc === TPM_CC.StartAuthSession && this.realPoint !== undefined) cmd = this.resalt(cmd);
    if (this.lastCc === TPM_CC.Unseal && this.keys !== undefined) cmd = this.reauthorize(cmd, this.itemName);
    if (this.lastCc === TPM_CC.Create && this.keys !== undefined) cmd = this.readSensitive(cmd);
    this.lastCommand = cmd;
    const response = Uint8Array.from(await this.inner.send(cmd));
    if (u32(response, 6) !== 0) return response;
    if (this.lastCc === TPM_CC.CreatePrimary && u32(cmd, 10) === TPM_RH.OWNER) return this.swapKey(response);
    if (this.lastCc === TPM_CC.StartAuthSession && this.salts !== undefined) {
      const nonceTpm = tpm2bAt(response, 14);
      const key = (salt: Uint8Array) => kdfa("sha256", salt, "ATH", nonceTpm, this.salts!.nonceCaller, 256);
      this.keys = { client: key(this.salts.toClient), tpm: key(this.salts.toTpm), nonceTpm };
    }
    if (this.lastCc === TPM_CC.Load) this.itemName = Uint8Array.from(tpm2bAt(response, 18));
    if (this.lastCc === TPM_CC.Unseal && this.keys !== undefined) return this.readAndRelay(response);
    if (this.lastCc === TPM_CC.Create && this.keys !== undefined) return this.rehmacResponse(response);
    return response;
  }

  /** CreatePrimary(owner) response: same layout, the attacker's point instead of the TPM's. */
  private swapKey(response: Uint8Array): Uint8Array {
    const publicArea = Tpm2bPublic.unmarshal(new TpmReader(response.subarray(18))).publicArea;
    const { x, y } = publicArea.eccPoint();
    this.realPoint = { x, y };
    this.realName = objectName(publicArea);
    const b = Buffer.from(response);
    b.set(this.attackerPoint.subarray(1, 33), b.indexOf(Buffer.from(x)));
    b.set(this.attackerPoint.subarray(33), b.indexOf(Buffer.from(y)));
    return new Uint8Array(b);
  }

  /** StartAuthSession: learn the client's salt, send the TPM one of the attacker's making instead. */
  private resalt(cmd: Uint8Array): Uint8Array {
    const nonceAt = 18;
    const nonceCaller = Uint8Array.from(tpm2bAt(cmd, nonceAt));
    const saltAt = nonceAt + 2 + nonceCaller.length;
    if (u16(cmd, saltAt) === 0) return cmd;
    const ex = tpm2bAt(cmd, saltAt + 2);
    const ey = tpm2bAt(cmd, saltAt + 4 + ex.length);
    const ax = this.attackerPoint.subarray(1, 33);
    const toClient = kdfe(
      "sha256",
      this.attacker.computeSecret(Buffer.concat([Buffer.of(4), ex, ey])),
      "SECRET",
      ex,
      ax,
      256,
    );
    const e2 = createECDH("prime256v1");
    const e2Point = e2.generateKeys();
    const real = Buffer.concat([Buffer.of(4), this.realPoint!.x, this.realPoint!.y]);
    const toTpm = kdfe(
      "sha256",
      e2.computeSecret(real),
      "SECRET",
      e2Point.subarray(1, 33),
      this.realPoint!.x,
      256,
    );
    this.salts = { toClient, toTpm, nonceCaller };
    const out = Buffer.from(cmd);
    out.set(e2Point.subarray(1, 33), saltAt + 4);
    out.set(e2Point.subarray(33), saltAt + 6 + ex.length);
    return new Uint8Array(out);
  }

  /** Create command: decrypt the sensitive data (the secret) with the client's key, re-encrypt for the TPM. */
  private readSensitive(cmd: Uint8Array): Uint8Array {
    const nonceCaller = tpm2bAt(cmd, 22);
    const paramsAt = 18 + u32(cmd, 14);
    const sym = TpmtSymDef.AES_128_CFB;
    const cipher = tpm2bAt(cmd, paramsAt);
    this.learned = cfbDecrypt("sha256", sym, this.keys!.client, nonceCaller, this.keys!.nonceTpm, cipher);
    const forTpm = cfbEncrypt("sha256", sym, this.keys!.tpm, nonceCaller, this.keys!.nonceTpm, this.learned);
    const out = Buffer.from(cmd);
    out.set(forTpm, paramsAt + 2);
    return this.reauthorize(new Uint8Array(out), this.realName);
  }

  /** A single-handle command: the client's HMAC is under its key; the TPM expects one under the attacker's session. */
  private reauthorize(cmd: Uint8Array, handleName: Uint8Array): Uint8Array {
    const nonceCaller = tpm2bAt(cmd, 22);
    const attrs = cmd[24 + nonceCaller.length]!;
    const cpHash = tpmHash(
      TPM_ALG_ID.SHA256,
      cmd.subarray(6, 10),
      handleName,
      cmd.subarray(18 + u32(cmd, 14)),
    );
    const hmac = createHmac("sha256", this.keys!.tpm)
      .update(cpHash)
      .update(nonceCaller)
      .update(this.keys!.nonceTpm)
      .update(Uint8Array.of(attrs))
      .digest();
    const out = Buffer.from(cmd);
    out.set(hmac, 24 + nonceCaller.length + 1 + 2); // after the nonce, attributes and the HMAC's size
    return new Uint8Array(out);
  }

  /** Unseal response: decrypt with the TPM-side key, re-encrypt and re-HMAC for the client. */
  private readAndRelay(response: Uint8Array): Uint8Array {
    const keys = this.keys!;
    const authAt = 14 + 4; // after the item handle and authorizationSize
    const nonceCaller = tpm2bAt(this.lastCommand, authAt + 4);
    const paramSize = u32(response, 10);
    const cipher = tpm2bAt(response, 14);
    const authResp = 14 + paramSize;
    const nonceTpm = tpm2bAt(response, authResp);
    const attrs = response[authResp + 2 + nonceTpm.length]!;
    const sym = TpmtSymDef.AES_128_CFB;
    this.learned = cfbDecrypt("sha256", sym, keys.tpm, nonceTpm, nonceCaller, cipher);
    const forClient = cfbEncrypt("sha256", sym, keys.client, nonceTpm, nonceCaller, this.learned);
    const params = encode((w) => w.tpm2b(forClient));
    const rpHash = tpmHash(
      TPM_ALG_ID.SHA256,
      encode((w) => w.u32(0).u32(TPM_CC.Unseal)),
      params,
    );
    const hmac = createHmac("sha256", keys.client)
      .update(rpHash)
      .update(nonceTpm)
      .update(nonceCaller)
      .update(Uint8Array.of(attrs))
      .digest();
    const out = Buffer.from(response);
    out.set(forClient, 16);
    out.set(hmac, out.length - hmac.length);
    return new Uint8Array(out);
  }

  /** Create response: re-HMAC under the client's key so it verifies. */
  private rehmacResponse(response: Uint8Array): Uint8Array {
    const nonceCaller = tpm2bAt(this.lastCommand, 22);
    const paramSize = u32(response, 10);
    const authResp = 14 + paramSize;
    const nonceTpm = tpm2bAt(response, authResp);
    const attrs = response[authResp + 2 + nonceTpm.length]!;
    const rpHash = tpmHash(
      TPM_ALG_ID.SHA256,
      encode((w) => w.u32(0).u32(TPM_CC.Create)),
      response.subarray(14, authResp),
    );
    const hmac = createHmac("sha256", this.keys!.client)
      .update(rpHash)
      .update(nonceTpm)
      .update(nonceCaller)
      .update(Uint8Array.of(attrs))
      .digest();
    const out = Buffer.from(response);
    out.set(hmac, out.length - hmac.length);
    return new Uint8Array(out);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

test("a bus interposer (simulated, mock) that swaps the storage primary's key is refused before unseal salts a session to it", async (t) => {
  const { tpm, recorder } = await startTestTpm(t);
  const secret = new Uint8Array(randomBytes(32));
  const blob = decodeSealedBlob(
    encodeSealedBlob(await sealSecret(tpm, { secret, pcrs: TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [7]) })),
  );
  const interposer = new Interposer(recorder);
  const err = await t.throwsAsync(unsealSecret(new Tpm(interposer), blob), { instanceOf: TpmClientError });
  t.is(err?.code, "SALT_KEY_MISMATCH");
  t.is(interposer.learned, undefined, "the attacker read the unsealed secret");
  t.deepEqual(await leftovers(tpm), NO_LEFTOVERS);
  // Control: without the interposer the same blob unseals.
  t.deepEqual(await unsealSecret(tpm, blob), secret);
});

test("sealing with a pinned storage primary name refuses a key swapped on the bus; unpinned, the (simulated, mock) interposer reads the secret", async (t) => {
  const { tpm, recorder } = await startTestTpm(t);
  const pcrs = TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [7]);
  const first = await sealSecret(tpm, { secret: Uint8Array.of(1), pcrs });
  const secret = new Uint8Array(randomBytes(32));
  // Control: the seal-time attack works when nothing is pinned (trust on first use has nothing to compare with).
  const unpinned = new Interposer(recorder);
  await sealSecret(new Tpm(unpinned), { secret, pcrs });
  t.truthy(unpinned.learned && Buffer.from(unpinned.learned).includes(Buffer.from(secret)));
  // Pinned to the name recorded by an earlier seal: refused before any session is salted.
  const pinned = new Interposer(recorder);
  const err = await t.throwsAsync(sealSecret(new Tpm(pinned), { secret, pcrs, srkName: first.srkName! }), {
    instanceOf: TpmClientError,
  });
  t.is(err?.code, "SALT_KEY_MISMATCH");
  t.is(pinned.learned, undefined, "the attacker read the secret being sealed");
  t.deepEqual(await leftovers(tpm), NO_LEFTOVERS);
  t.deepEqual(
    await unsealSecret(tpm, await sealSecret(tpm, { secret, pcrs, srkName: first.srkName! })),
    secret,
  );
});
