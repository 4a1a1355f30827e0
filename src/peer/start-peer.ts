/**
 * One lockbox peer, wired: config -> store -> master key provider -> barrier
 * -> key service + audit log + raft node (src/raft, on the same store) -> one
 * gRPC server (keys, admin, and the raft peer service). `lockbox serve` and the tests
 * start peers through this one function, so they run the same thing.
 */
import { readFile } from "node:fs/promises";
import { AuditLog } from "../audit/audit-log.js";
import { loadPeerConfig, resolvePeerPath, type PeerConfig } from "../config/peer-config.js";
import { Barrier } from "../crypto/barrier.js";
import { DevelopmentFileProtector } from "../crypto/development-file-protector.js";
import { KeyService } from "../keys/key-service.js";
import { checkMasterKeyCanary, pinClusterParameters } from "../keys/open-key-service.js";
import { systemClock, type Clock } from "../keys/key-model.js";
import { startPeerRaft } from "../raft/peer-raft.js";
import { startLockboxServer, type RunningServer } from "../server/lockbox-server.js";
import { openPeerStore } from "../store/peer-store.js";
import { LOCKBOX_VERSION } from "./version.js";

export interface StartPeerOptions {
  /** The directory `lockbox init` created. */
  dir: string;
  /** HOST:PORT to listen on instead of the config's; port 0 picks a free one. */
  listen?: string;
  /** Server-side log lines, including the development protector's warning; stderr by default. */
  log?: (line: string) => void;
  clock?: Clock;
}

export interface RunningPeer {
  /** "HOST:PORT" actually bound. */
  readonly address: string;
  readonly port: number;
  readonly peerId: string;
  readonly clusterId: string;
  /** Lets in-flight calls finish (at most drainMs), then closes the store. Idempotent. */
  close(drainMs?: number): Promise<void>;
}

export async function startPeer(options: StartPeerOptions): Promise<RunningPeer> {
  const log = options.log ?? ((line: string) => process.stderr.write(line + "\n"));
  const clock = options.clock ?? systemClock;
  const { dir } = options;
  const config = await loadPeerConfig(dir);
  const tls = {
    caCertificatePem: await readFile(resolvePeerPath(dir, config, "caCertificate"), "utf8"),
    certificatePem: await readFile(resolvePeerPath(dir, config, "peerCertificate"), "utf8"),
    privateKeyPem: await readFile(resolvePeerPath(dir, config, "peerKey"), "utf8"),
  };
  const protector = new DevelopmentFileProtector(resolvePeerPath(dir, config, "masterKey"), { log });
  const barrier = new Barrier();
  await barrier.unsealWith(protector);

  const cleanups: (() => Promise<void>)[] = [async () => barrier.seal()];
  const cleanup = async (): Promise<void> => {
    for (const step of cleanups.reverse()) await step();
  };
  try {
    const store = await openPeerStore(resolvePeerPath(dir, config, "data"));
    cleanups.push(() => store.close());
    // A wrong master key must stop the peer here, not surface later as DATA_LOSS on every read.
    await checkMasterKeyCanary(store, barrier);
    // Likewise an edited partition power or salt must stop it, not hide every key it holds.
    const clusterSalt = Buffer.from(config.clusterSalt, "hex");
    await pinClusterParameters(store, clusterSalt, config.partitionPower);
    const keys = await KeyService.open({
      store,
      barrier,
      clusterSalt,
      partitionPower: config.partitionPower,
      clock,
    });
    cleanups.push(() => keys.close());
    const audit = await AuditLog.open(store, clock);
    // The raft node shares the store (its `raft` sublevel) and, below, the server and its TLS.
    const raft = await startPeerRaft({
      peerId: config.peerId,
      store,
      tls,
      log,
      // Fail-stop: the raft node stops writing and says so in status; keys are served as before.
      onFatal: (e) => log(`raft: stopped on an error: ${e instanceof Error ? e.message : String(e)}`),
    });
    cleanups.push(() => raft.stop());
    const startedAt = clock.now();
    const description = protector.describe();
    const server = await startLockboxServer(
      {
        tls,
        keys,
        audit,
        clock,
        log,
        peerServices: [raft.service],
        admin: {
          status: () => ({
            peerId: config.peerId,
            clusterId: config.clusterId,
            version: LOCKBOX_VERSION,
            sealState: barrier.sealed ? "sealed" : "unsealed",
            masterKeyProtector: description.protector,
            masterKeyEpoch: barrier.sealed ? 0 : barrier.activeEpoch,
            startedAt,
            keyCount: keys.stats().keyCount,
            partitionPower: config.partitionPower,
            raft: raft.status(),
          }),
          listAuditEvents: (req) => audit.list(req),
        },
      },
      options.listen ?? config.listen,
    );
    return runningPeer(config, server, cleanup);
  } catch (err) {
    await cleanup();
    throw err;
  }
}

function runningPeer(config: PeerConfig, server: RunningServer, cleanup: () => Promise<void>): RunningPeer {
  let closing: Promise<void> | undefined;
  return {
    address: server.address,
    port: server.port,
    peerId: config.peerId,
    clusterId: config.clusterId,
    close(drainMs?: number) {
      closing ??= (async () => {
        await server.close(drainMs);
        await cleanup();
      })();
      return closing;
    },
  };
}
