/**
 * The one seam through which a peer obtains the cluster master key (CMK). The development file
 * protector implements it today; the TPM protector (sealed to the peer's own TPM) replaces it
 * without the key service noticing.
 */
export interface MasterKey {
  epoch: number;
  /** 32 bytes. The receiver owns the buffer and zeroes it once handed to a Keyring. */
  key: Uint8Array;
}

export type MasterKeyProtectorKind = "development-file" | "tpm";

export interface MasterKeyProviderDescription {
  protector: MasterKeyProtectorKind;
  /** Human-readable detail for status output (a path, a TPM handle). Never key bytes. */
  detail: string;
  /** True only for protectors that must never be used in production. */
  insecure: boolean;
}

export interface MasterKeyProvider {
  /** The active (highest) epoch's CMK. */
  load(): Promise<MasterKey>;
  /**
   * Every epoch the provider holds, ascending (during a rotation the old epoch stays until nothing
   * refers to it). Optional: a provider without it holds one epoch, the one load() returns.
   */
  loadAll?(): Promise<MasterKey[]>;
  /**
   * Stores exactly `keys` as the epochs this provider holds from now on (a rotation adds an epoch, then
   * drops the retired one). Optional: a provider without it cannot take part in a rotation.
   */
  persistEpochs?(keys: readonly MasterKey[]): Promise<void>;
  describe(): MasterKeyProviderDescription;
}
