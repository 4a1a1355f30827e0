/**
 * The barrier (after hashicorp/vault's barrier): everything wrapped under the cluster master key
 * passes through here, and nothing does while the peer is sealed. `wrap`/`unwrap` throw
 * FAILED_PRECONDITION "sealed" until `unseal` has handed it the CMK.
 */
import { createHmac, hkdfSync } from "node:crypto";
import { LockboxError } from "../errors.js";
import { envelopeEpoch, openEnvelope, sealEnvelope, type EnvelopeBinding } from "./envelope.js";
import { Keyring } from "./keyring.js";
import type { MasterKeyProvider } from "./master-key-provider.js";
import { nodeRandomSource, zeroize, type RandomSource } from "./random-source.js";

export class Barrier {
  private keyring: Keyring | undefined;
  private readonly sealListeners: Array<() => void> = [];
  private announced: ReadonlySet<number> = new Set();

  constructor(private readonly random: RandomSource = nodeRandomSource) {}

  get sealed(): boolean {
    return this.keyring === undefined;
  }

  /** The epoch new wraps use; throws when sealed. */
  get activeEpoch(): number {
    return this.requireKeyring().activeEpoch;
  }

  /** Installs a keyring (the barrier takes ownership and zeroes it on seal). */
  unseal(keyring: Keyring): void {
    if (keyring.size === 0) throw new RangeError("cannot unseal with an empty keyring");
    this.keyring?.zeroize();
    this.keyring = keyring;
  }

  /** Every epoch this peer holds, ascending; throws when sealed. */
  get heldEpochs(): number[] {
    return this.requireKeyring().epochs;
  }

  /**
   * Holds `key` as epoch `epoch` without making it active (a rotation's next epoch, delivered before
   * the cluster activates it). The bytes are copied; the caller zeroes its own. False if already held.
   */
  addEpoch(epoch: number, key: Uint8Array): boolean {
    const keyring = this.requireKeyring();
    if (keyring.key(epoch) !== undefined) return false;
    this.keyring = keyring.withStagedEpoch(epoch, key);
    return true;
  }

  /** The epochs the control state names (held here or not): an unwrap under one not held yet is retryable. */
  announce(epochs: readonly number[]): void {
    this.announced = new Set(epochs);
  }

  /** Makes held epoch `epoch` the one new wraps use (the control state activated it). */
  activate(epoch: number): void {
    const keyring = this.requireKeyring();
    if (keyring.activeEpoch !== epoch) this.keyring = keyring.withActive(epoch);
  }

  /** Forgets (and zeroes) a retired epoch; the active one cannot be dropped. False if not held. */
  dropEpoch(epoch: number): boolean {
    const keyring = this.requireKeyring();
    if (keyring.key(epoch) === undefined) return false;
    this.keyring = keyring.without(epoch);
    return true;
  }

  /** Loads the CMK (every epoch the provider holds) through `provider` and unseals. */
  async unsealWith(provider: MasterKeyProvider): Promise<void> {
    const keys = provider.loadAll !== undefined ? await provider.loadAll() : [await provider.load()];
    try {
      let keyring = Keyring.empty();
      for (const { epoch, key } of keys) keyring = keyring.withEpoch(epoch, key);
      this.unseal(keyring);
    } finally {
      for (const { key } of keys) zeroize(key);
    }
  }

  /** Forgets (and zeroes) the CMK, then tells listeners to drop what they unwrapped with it. */
  seal(): void {
    this.keyring?.zeroize();
    this.keyring = undefined;
    for (const listener of this.sealListeners) listener();
  }

  /** Runs `listener` on every seal, e.g. to zero caches of keys unwrapped through the barrier. */
  onSeal(listener: () => void): void {
    this.sealListeners.push(listener);
  }

  /** Throws FAILED_PRECONDITION "sealed" while sealed. */
  requireUnsealed(): void {
    this.requireKeyring();
  }

  wrap(plaintext: Uint8Array, binding: EnvelopeBinding): Uint8Array {
    const keyring = this.requireKeyring();
    const epoch = keyring.activeEpoch;
    return sealEnvelope(keyring.key(epoch)!, epoch, plaintext, binding, this.random);
  }

  /** Throws DATA_LOSS when the blob fails authentication or names an epoch this peer does not hold. */
  unwrap(blob: Uint8Array, binding: EnvelopeBinding): Uint8Array {
    const keyring = this.requireKeyring();
    const epoch = envelopeEpoch(blob);
    const key = keyring.key(epoch);
    if (key === undefined) {
      // An epoch the cluster has and this peer does not hold yet (a rotation it has not caught up
      // with): its keeper fetches it by attestation (src/controlplane/cmk-epoch-keeper.ts), so the call
      // is retryable. Any other unknown epoch is damage.
      if (this.announced.has(epoch)) {
        throw new LockboxError(
          "UNAVAILABLE",
          `this peer does not hold master key epoch ${epoch} yet (a rotation is in progress); retry`,
        );
      }
      throw new LockboxError("DATA_LOSS", `integrity check failed: unknown master key epoch ${epoch}`);
    }
    return openEnvelope(key, blob, binding);
  }

  /**
   * A 32-byte subkey of the active CMK for `purpose` (HKDF-SHA256), e.g. the page-token MAC key.
   * Subkeys change when the CMK rotates; only use them for short-lived values.
   */
  deriveKey(purpose: string): Uint8Array {
    const keyring = this.requireKeyring();
    const ikm = keyring.key(keyring.activeEpoch)!;
    return new Uint8Array(hkdfSync("sha256", ikm, new Uint8Array(0), `lockbox/v1/${purpose}`, 32));
  }

  /** HMAC-SHA256 of `data` under the subkey for `purpose`. */
  mac(purpose: string, data: Uint8Array): Uint8Array {
    const key = this.deriveKey(purpose);
    try {
      return new Uint8Array(createHmac("sha256", key).update(data).digest());
    } finally {
      zeroize(key);
    }
  }

  /**
   * A copy of the active CMK and its epoch, for the one caller that must hand the key on: the attested
   * join, which sends it wrapped to the ephemeral key of a joiner that passed every check. The caller
   * zeroes `key` after use. Throws FAILED_PRECONDITION "sealed" while sealed.
   */
  releaseActiveKey(): { epoch: number; key: Uint8Array } {
    const keyring = this.requireKeyring();
    const epoch = keyring.activeEpoch;
    return { epoch, key: Uint8Array.from(keyring.key(epoch)!) };
  }

  /**
   * A copy of held epoch `epoch`, for the callers that must hand a CMK on: a rotation's delivery to an
   * attested member (wrapped to its ephemeral key), persisting the held epochs to this peer's TPM, and
   * recovery shares of a new epoch. The caller zeroes `key`. Undefined when the epoch is not held.
   */
  releaseKey(epoch: number): { epoch: number; key: Uint8Array } | undefined {
    const key = this.requireKeyring().key(epoch);
    return key === undefined ? undefined : { epoch, key: Uint8Array.from(key) };
  }

  private requireKeyring(): Keyring {
    if (this.keyring === undefined) throw new LockboxError("FAILED_PRECONDITION", "sealed");
    return this.keyring;
  }
}
