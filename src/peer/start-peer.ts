/**
 * The composition root: one lockbox peer, wired from its config. config ->
 * master key provider -> store, barrier, key service, audit log (peer-core.ts)
 * -> gRPC server. `lockbox serve`, `lockbox dev-cluster` and the tests start
 * peers through this one function, so they run the same thing; a test that
 * must replace a part says which through `replaceParts`.
 */
import { readFile } from "node:fs/promises";
import type { AuditLog } from "../audit/audit-log.js";
import { loadPeerConfig, resolvePeerPath, type PeerConfig } from "../config/peer-config.js";
import { DevelopmentFileProtector } from "../crypto/development-file-protector.js";
import type { KeyService } from "../keys/key-service.js";
import { systemClock, type Clock } from "../time/clock.js";
import {
  startLockboxServer,
  type LockboxServerOptions,
  type RunningServer,
} from "../server/lockbox-server.js";
import { openPeerCore } from "./peer-core.js";
import { LOCKBOX_VERSION } from "./version.js";

export interface StartPeerOptions {
  /** The directory `lockbox init` created. */
  dir: string;
  /** HOST:PORT to listen on instead of the config's; port 0 picks a free one. */
  listen?: string;
  /** Server-side log lines, including the development protector's warning; stderr by default. */
  log?: (line: string) => void;
  clock?: Clock;
  /**
   * Tests only: puts parts of the test's choosing between the real ones and the edge (a key
   * service that records what it is given, an audit sink that fails, a log that collects). The
   * peer is still built here, by the same code as every other peer; only what its edge calls
   * changes, and the real parts are still the ones closed.
   */
  replaceParts?: (real: {
    keys: KeyService;
    audit: AuditLog;
  }) => Partial<Pick<LockboxServerOptions, "keys" | "audit" | "log">>;
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
  const core = await openPeerCore({
    dataDir: resolvePeerPath(dir, config, "data"),
    masterKey: protector,
    clusterSalt: Buffer.from(config.clusterSalt, "hex"),
    partitionPower: config.partitionPower,
    clock,
    audit: { log },
  });
  try {
    const { barrier, keys, audit } = core;
    const startedAt = clock.now();
    const description = protector.describe();
    const server = await startLockboxServer(
      {
        tls,
        keys,
        audit,
        clock,
        log,
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
          }),
          listAuditEvents: (req) => audit.list(req),
        },
        ...options.replaceParts?.({ keys, audit }),
      },
      options.listen ?? config.listen,
    );
    return runningPeer(config, server, () => core.close());
  } catch (err) {
    await core.close();
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
