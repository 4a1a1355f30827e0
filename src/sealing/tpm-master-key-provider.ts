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
import { readSealedMasterKeyFile, unsealMasterKey } from "./sealed-master-key.js";

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
    const bytes = await readSealedMasterKeyFile(this.p.sealedFile);
    try {
      return await this.p.tpm.use((tpm) =>
        unsealMasterKey(tpm, bytes, { clusterId: this.p.clusterId, source: this.p.sealedFile }),
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

  describe(): MasterKeyProviderDescription {
    return {
      protector: "tpm",
      detail: `sealed to the TPM at ${this.p.tpm.address.spec} in ${this.p.sealedFile}`,
      insecure: false,
    };
  }
}
