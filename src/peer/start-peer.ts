/**
 * The composition root: one lockbox peer, wired from its config. config ->
 * master key provider -> store, barrier, key service, audit log (peer-core.ts)
 * -> raft node on the same store (src/raft) -> one gRPC server serving keys,
 * admin and the raft peer service. `lockbox serve`, `lockbox dev-cluster` and the tests start
 * peers through this one function, so they run the same thing; a test that
 * must replace a part says which through `replaceParts`.
 */
import { readFile } from "node:fs/promises";
import type { JoinEndpointOptions } from "../attestation/join-endpoint.js";
import type { AuditLog } from "../audit/audit-log.js";
import { loadPeerConfig, resolvePeerPath, type PeerConfig } from "../config/peer-config.js";
import type { PeerTpm } from "../sealing/peer-tpm.js";
import { masterKeyProviderOf } from "./master-key-of-config.js";
import type { KeyService } from "../keys/key-service.js";
import { systemClock, type Clock } from "../time/clock.js";
import type { LockboxServerOptions, RunningServer } from "../server/lockbox-server.js";
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
  /**
   * Serves lockbox.v1.JoinService (the attested join, src/attestation) over this authority's
   * members, policies and CMK. The control state (src/controlplane) is to provide the authority;
   * until it does, only tests pass one (an InMemoryJoinAuthority).
   */
  join?: JoinEndpointOptions;
}

export interface RunningPeer {
  /** "HOST:PORT" actually bound. */
  readonly address: string;
  readonly port: number;
  readonly peerId: string;
  readonly clusterId: string;
  /** This peer's own TPM, when its CMK is sealed to one (one operation at a time; see PeerTpm). */
  readonly tpm: PeerTpm | undefined;
  /** Lets in-flight calls finish (at most drainMs), then closes the store. Idempotent. */
  close(drainMs?: number): Promise<void>;
}

export async function startPeer(options: StartPeerOptions): Promise<RunningPeer> {
  // The edge's modules (grpc-js, protobufjs: most of a start's time goes to loading them) load
  // while the config is read and the store opens, rather than before: both run at once.
  const serverModule = import("../server/lockbox-server.js");
  serverModule.catch(() => {}); // awaited below; unobserved only when an earlier step failed
  // The raft transport loads grpc-js and peer.proto too: the same overlap.
  const raftModule = import("../raft/peer-raft.js");
  raftModule.catch(() => {});
  const log = options.log ?? ((line: string) => process.stderr.write(line + "\n"));
  const clock = options.clock ?? systemClock;
  const { dir } = options;
  const config = await loadPeerConfig(dir);
  const tls = {
    caCertificatePem: await readFile(resolvePeerPath(dir, config, "caCertificate"), "utf8"),
    certificatePem: await readFile(resolvePeerPath(dir, config, "peerCertificate"), "utf8"),
    privateKeyPem: await readFile(resolvePeerPath(dir, config, "peerKey"), "utf8"),
  };
  // The CMK: unsealed from this peer's TPM, or (development only) read from its file.
  const { protector, tpm } = await masterKeyProviderOf(dir, config, log);
  const core = await openPeerCore({
    dataDir: resolvePeerPath(dir, config, "data"),
    masterKey: protector,
    clusterSalt: Buffer.from(config.clusterSalt, "hex"),
    partitionPower: config.partitionPower,
    clock,
    audit: { log },
  });
  let stopRaft = async (): Promise<void> => {};
  const close = async (): Promise<void> => {
    await stopRaft();
    await core.close();
    // Last, after everything that might use the TPM: a swtpm keeps its clock safe across its next stop.
    await tpm?.shutdown().catch((e: unknown) => log(`tpm: Shutdown(STATE) failed: ${String(e)}`));
  };
  try {
    const { barrier, keys, audit } = core;
    // The raft node shares the store (its `raft` sublevel) and, below, the server and its TLS.
    const { startPeerRaft } = await raftModule;
    const raft = await startPeerRaft({
      peerId: config.peerId,
      store: core.store,
      tls,
      log,
      // Fail-stop: the raft node stops writing and says so in status; keys are served as before.
      onFatal: (e) => log(`raft: stopped on an error: ${e instanceof Error ? e.message : String(e)}`),
    });
    stopRaft = () => raft.stop();
    const startedAt = clock.now();
    const description = protector.describe();
    const { startLockboxServer } = await serverModule;
    const join =
      options.join === undefined
        ? undefined
        : (await import("../attestation/join-endpoint.js")).joinEndpoint(options.join, {
            audit,
            caCertificatePem: tls.caCertificatePem,
            clock,
            log,
          });
    const server = await startLockboxServer(
      {
        tls,
        keys,
        audit,
        clock,
        log,
        peerServices: join === undefined ? [raft.service] : [raft.service, join],
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
            purge: keys.stats().purge,
          }),
          listAuditEvents: (req) => audit.list(req),
        },
        ...options.replaceParts?.({ keys, audit }),
      },
      options.listen ?? config.listen,
    );
    return runningPeer(config, server, tpm, close);
  } catch (err) {
    await close();
    throw err;
  }
}

function runningPeer(
  config: PeerConfig,
  server: RunningServer,
  tpm: PeerTpm | undefined,
  cleanup: () => Promise<void>,
): RunningPeer {
  let closing: Promise<void> | undefined;
  return {
    address: server.address,
    port: server.port,
    peerId: config.peerId,
    clusterId: config.clusterId,
    tpm,
    close(drainMs?: number) {
      closing ??= (async () => {
        await server.close(drainMs);
        await cleanup();
      })();
      return closing;
    },
  };
}
