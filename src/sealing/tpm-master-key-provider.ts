/**
 * The production MasterKeyProvider: the CMK sealed to this peer's own TPM
 * (sealed-master-key.ts), unsealed locally at every start without contacting
 * anyone. If the TPM cannot release it, load() throws a MasterKeyError whose
 * `reason` says why (CMK_PCRS_CHANGED: attest again; CMK_SRK_MISMATCH: another
 * or a cleared TPM; CMK_SEALED_FILE_*: the file), and the peer does not start.
 */
import type {
  MasterKey,
  MasterKeyProvider,
  MasterKeyProviderDescription,
} from "../crypto/master-key-provider.js";
import { MasterKeyError } from "../crypto/master-key-error.js";
import type { PeerTpm } from "./peer-tpm.js";
import { zeroize } from "../crypto/random-source.js";
import {
  decodeSealedMasterKey,
  readSealedMasterKeyFile,
  sealedPcrs,
  sealMasterKeys,
  sha256Pcrs,
  unsealMasterKeys,
  writeSealedMasterKeyFile,
} from "./sealed-master-key.js";

export class TpmMasterKeyProvider implements MasterKeyProvider {
  constructor(
    private readonly p: {
      tpm: PeerTpm;
      /** The sealed CMK file. */
      sealedFile: string;
      /** This peer's cluster: a sealed file of another cluster is refused. */
      clusterId: string;
    },
  ) {}

  async load(): Promise<MasterKey> {
    const keys = await this.loadAll();
    for (const k of keys.slice(0, -1)) zeroize(k.key);
    return keys[keys.length - 1]!;
  }

  /** Every epoch in the sealed file, ascending (more than one during a rotation). */
  async loadAll(): Promise<MasterKey[]> {
    const bytes = await readSealedMasterKeyFile(this.p.sealedFile);
    try {
      return await this.p.tpm.use((tpm) =>
        unsealMasterKeys(tpm, bytes, { clusterId: this.p.clusterId, source: this.p.sealedFile }),
      );
    } catch (cause) {
      if (cause instanceof MasterKeyError) throw cause;
      // Connecting failed (no swtpm on the port, no device): the TPM is unreachable.
      throw new MasterKeyError(
        "CMK_TPM_FAILED",
        `cannot reach the TPM at ${this.p.tpm.address.spec}: ${cause instanceof Error ? cause.message : String(cause)}`,
        { cause },
      );
    }
  }

  /**
   * Seals `keys` (one or more epochs) to this TPM's current values of `pcrs` and replaces the sealed
   * file atomically (a crash leaves the old file or the new one). For a rotation (old and new epoch,
   * later the new one alone) and for a peer that attested again after its PCRs changed.
   */
  async reseal(keys: readonly MasterKey[], pcrs: readonly number[]): Promise<void> {
    const bytes = await this.p.tpm.use((tpm) =>
      sealMasterKeys(tpm, { keys, clusterId: this.p.clusterId, pcrs: sha256Pcrs(pcrs) }),
    );
    await writeSealedMasterKeyFile(this.p.sealedFile, bytes, { replace: true });
  }

  /**
   * Seals exactly `keys` (the epochs this peer holds during and after a rotation) to the PCRs the
   * current sealed file names, at their current values, replacing the file atomically.
   */
  async persistEpochs(keys: readonly MasterKey[]): Promise<void> {
    const current = decodeSealedMasterKey(
      await readSealedMasterKeyFile(this.p.sealedFile),
      this.p.sealedFile,
    );
    await this.reseal(keys, sealedPcrs(current));
  }

  describe(): MasterKeyProviderDescription {
    return {
      protector: "tpm",
      detail: `sealed to the TPM at ${this.p.tpm.address.spec} in ${this.p.sealedFile}`,
      insecure: false,
    };
  }
}
