/**
 * Which master key provider a peer's config names: the CMK sealed to the
 * peer's TPM (config.masterKeySealing), or the DEVELOPMENT ONLY master key
 * file. For a TPM it also makes a swtpm's clock safe again after a crash
 * (PeerTpm.prepare) before unsealing, so this peer's quotes carry `safe`.
 */
import { resolveConfigPath } from "../config/master-key-sealing-config.js";
import { resolvePeerPath, type PeerConfig } from "../config/peer-config.js";
import { DevelopmentFileProtector } from "../crypto/development-file-protector.js";
import type { MasterKeyProvider } from "../crypto/master-key-provider.js";
import { PeerTpm } from "../sealing/peer-tpm.js";
import { requireTpmAddress } from "../sealing/tpm-address.js";
import { TpmMasterKeyProvider } from "../sealing/tpm-master-key-provider.js";

export async function masterKeyProviderOf(
  dir: string,
  config: PeerConfig,
  log: (line: string) => void,
): Promise<{ protector: MasterKeyProvider; tpm?: PeerTpm }> {
  const sealing = config.masterKeySealing;
  if (sealing === undefined) {
    return { protector: new DevelopmentFileProtector(resolvePeerPath(dir, config, "masterKey"), { log }) };
  }
  const tpm = new PeerTpm(requireTpmAddress(sealing.tpm, "masterKeySealing.tpm"));
  try {
    const clock = await tpm.prepare();
    if (clock !== undefined)
      log(
        `tpm: ${sealing.tpm} clock safe=${clock.safe} resetCount=${clock.resetCount} restartCount=${clock.restartCount}`,
      );
  } catch (err) {
    // Not fatal here: the unseal that follows names what is wrong with the TPM.
    log(
      `tpm: could not check the clock of ${sealing.tpm}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const protector = new TpmMasterKeyProvider({
    tpm,
    sealedFile: resolveConfigPath(dir, sealing.sealedFile),
    clusterId: config.clusterId,
  });
  return { protector, tpm };
}
