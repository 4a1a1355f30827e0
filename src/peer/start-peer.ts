/**
 * The composition root: one lockbox peer, wired from its config. config ->
 * master key provider -> store, barrier, key service, audit log (peer-core.ts)
 * -> raft node on the same store (src/raft) -> one gRPC server serving keys,
 * admin and the raft peer service. `lockbox serve`, `lockbox dev-cluster` and the tests start
 * peers through this one function, so they run the same thing; a test that
 * must replace a part says which through `replaceParts`.
 */
import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { openAuditExport } from "../audit/audit-export.js";
import type { ObservedCall } from "../server/call-observer.js";
import type { JoinEndpointOptions } from "../attestation/join-endpoint.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { LogLevel } from "../logging/log-level.js";
import type { Logger } from "../logging/logger.js";
import { RefusedCallLog } from "../logging/refused-call-log.js";
import { NO_METRICS, type PeerMetricsHooks } from "../metrics/metrics-hooks.js";
import { loadPeerConfig, resolvePeerPath, type PeerConfig } from "../config/peer-config.js";
import type { PeerTpm } from "../sealing/peer-tpm.js";
import { masterKeyProviderOf } from "./master-key-of-config.js";
import type { KeyService } from "../keys/key-service.js";
import { systemClock, type Clock } from "../time/clock.js";
import type { LockboxServerOptions, RunningServer } from "../server/lockbox-server.js";
import { InFlightLimit } from "../edge/in-flight.js";
import { guardKeyCalls } from "../edge/fenced-peer-guard.js";
import { openPeerCore } from "./peer-core.js";
import { ClusterAdmin } from "../controlplane/cluster-admin.js";
import { wrapCaKey } from "../controlplane/cluster-ca-key.js";
import { controlKekStore } from "../controlplane/control-kek-store.js";
import { kekMetaKey } from "../keys/project-keks.js";
import { ControlPlane } from "../controlplane/control-plane.js";
import { ControlState, type ControlResult } from "../controlplane/control-state.js";
import { LeaderDuties } from "../controlplane/leader-duties.js";
import { ControlJoinAuthority } from "../controlplane/control-join-authority.js";
import { FOUNDER_ATTESTATION_FILE, readFounderAttestation } from "../attestation/founder-attestation.js";
import { LOCKBOX_VERSION } from "./version.js";
import { startMasterKeyEpochs } from "./master-key-epochs.js";
import { RingDuty } from "../controlplane/ring-duty.js";
import type { KeyReplication } from "../keys/key-replication.js";
import { LockboxError } from "../errors.js";
import { ReplicationNode, type ClusterView } from "../replication/replication-node.js";
import { attestationStatus, continuousAttestation } from "./continuous-attestation.js";
import { startPendingReenrolment } from "./pending-reenrolment.js";
import type { PeerRefusalCode } from "../pki/peer-refusal.js";

export interface StartPeerOptions {
  /** The directory `lockbox init` created. */
  dir: string;
  /** HOST:PORT to listen on instead of the config's; port 0 picks a free one. */
  listen?: string;
  /** HOST:PORT for the REST listener instead of the config's `rest.listen` (needs a `rest` section). */
  restListen?: string;
  /**
   * Server-side log lines as plain text, including the development protector's warning (tests).
   * Without it the peer logs JSON lines (pino) to stderr at `logLevel`.
   */
  log?: (line: string) => void;
  /** Overrides the config's log.level (`lockbox serve` passes $LOCKBOX_LOG_LEVEL). */
  logLevel?: LogLevel;
  /** Node's process warnings as JSON log lines of component "node" (process-wide: `lockbox serve`). */
  routeProcessWarnings?: boolean;
  /** HOST:PORT for /metrics, /healthz and /readyz instead of the config's metrics.listen; "" turns it off. */
  metricsListen?: string;
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
  }) => Partial<Pick<LockboxServerOptions, "keys" | "audit" | "log" | "limits">>;
  /**
   * Serves lockbox.v1.JoinService (the attested join, src/attestation) over this authority's
   * members, policies and CMK. The control state (src/controlplane) is to provide the authority;
   * until it does, only tests pass one (an InMemoryJoinAuthority).
   */
  join?: JoinEndpointOptions;
  /**
   * Serves JoinService over the replicated control state (src/controlplane ControlJoinAuthority):
   * enrollments from `lockbox peer enroll`, admissions committed through raft. EK certificates must
   * chain to `manufacturerCas`.
   */
  joinWithControlState?: {
    manufacturerCas: readonly X509Certificate[];
    /** TESTS ONLY: awaited after an admission committed, before it is answered (JoinVerifierOptions). */
    afterAdmit?: (peerId: string) => Promise<void>;
  };
  /** Overrides the config's autopilot.joinConfirmTimeoutMs (`lockbox serve`: $LOCKBOX_JOIN_CONFIRM_TIMEOUT_MS). */
  joinConfirmTimeoutMs?: number;
  /** Overrides the config's attestation.intervalMs (`lockbox serve` passes $LOCKBOX_ATTESTATION_INTERVAL_MS). */
  attestationIntervalMs?: number;
}

export interface RunningPeer {
  /** "HOST:PORT" actually bound. */
  readonly address: string;
  readonly port: number;
  readonly peerId: string;
  readonly clusterId: string;
  /** This peer's own TPM, when its CMK is sealed to one (one operation at a time; see PeerTpm). */
  readonly tpm: PeerTpm | undefined;
  /** "HOST:PORT" of the metrics and health listener, when it is on. */
  readonly metricsAddress: string | undefined;
  /** Its metrics hooks (NO_METRICS when the listener is off): parts started later report here. */
  readonly metrics: PeerMetricsHooks;
  /** Writes one info line of the peer's lifecycle ("draining", "stopped") to its log. */
  log(line: string): void;
  /**
   * Seals the peer at once (an operator's emergency stop, and how tests see a sealed peer): the
   * master key is forgotten, key calls fail FAILED_PRECONDITION, health turns NOT_SERVING and
   * /readyz 503. Unsealing needs a restart until the TPM unseal arrives.
   */
  seal(): void;
  /** "HOST:PORT" of the Barbican REST listener, when the config has one. */
  readonly restAddress?: string;
  /** Lets in-flight calls finish (at most drainMs), then closes the store. Idempotent. */
  close(drainMs?: number): Promise<void>;
}

/** How often health is brought in line with the seal and fence state (a backstop: both push their changes). */
const HEALTH_SYNC_MS = 5_000;

export async function startPeer(options: StartPeerOptions): Promise<RunningPeer> {
  // The edge's modules (grpc-js, protobufjs: most of a start's time goes to loading them) load
  // while the config is read and the store opens, rather than before: both run at once.
  const serverModule = import("../server/lockbox-server.js");
  serverModule.catch(() => {}); // awaited below; unobserved only when an earlier step failed
  // The raft transport loads grpc-js and peer.proto too: the same overlap.
  const raftModule = import("../raft/peer-raft.js");
  raftModule.catch(() => {});
  const loggerModule = options.log === undefined ? import("../logging/logger.js") : undefined;
  loggerModule?.catch(() => {});
  const clock = options.clock ?? systemClock;
  const { dir } = options;
  const config = await loadPeerConfig(dir);
  const logs = await peerLogs(options, config, loggerModule);
  const { logFor } = logs;
  if (options.routeProcessWarnings === true && logs.logger !== undefined) {
    const { routeProcessWarnings } = await import("../logging/process-warning-route.js");
    routeProcessWarnings(logs.logger);
  }
  const metricsListen = options.metricsListen ?? config.metrics.listen;
  // prom-client loads only when metrics are on.
  const metricsModules =
    metricsListen === ""
      ? undefined
      : Promise.all([import("../metrics/peer-metrics.js"), import("../metrics/ops-listener.js")]);
  metricsModules?.catch(() => {});
  let metrics: PeerMetricsHooks = NO_METRICS;
  const tls = {
    caCertificatePem: await readFile(resolvePeerPath(dir, config, "caCertificate"), "utf8"),
    certificatePem: await readFile(resolvePeerPath(dir, config, "peerCertificate"), "utf8"),
    privateKeyPem: await readFile(resolvePeerPath(dir, config, "peerKey"), "utf8"),
  };
  // The CMK: unsealed from this peer's TPM, or (development only) read from its file.
  const { protector, tpm } = await masterKeyProviderOf(dir, config, logFor("master-key", "warn"));
  const auditExport =
    config.audit.exportFile === "" && config.audit.exportSyslog === ""
      ? undefined
      : await openAuditExport({
          file: config.audit.exportFile === "" ? "" : resolve(dir, config.audit.exportFile),
          syslog: config.audit.exportSyslog,
          peerId: config.peerId,
          log: logFor("audit", "error"),
        });
  // The control state (src/controlplane) is the raft group's state machine (started below, on the same
  // store); it holds the project KEKs, so the key service reads and creates them through it.
  const control = new ControlPlane({
    peerId: config.peerId,
    state: new ControlState(),
    log: logFor("control", "warn"),
  });
  let legacyKeks: ((project: string) => Promise<Uint8Array | undefined>) | undefined;
  // Keys on the ring: the key service reaches replication through this until the node is up (below).
  let replicationNode: ReplicationNode | undefined;
  const replicationKeys = (): ReplicationNode["keys"] => {
    if (replicationNode === undefined) throw new LockboxError("UNAVAILABLE", "replication is starting");
    return replicationNode.keys;
  };
  const keyReplication: KeyReplication | undefined = config.replication.enabled
    ? {
        read: (id) => replicationKeys().read(id),
        write: (k) => replicationKeys().write(k),
        readPartition: (p) => replicationKeys().readPartition(p),
        stamp: () => replicationKeys().stamp(),
        settle: (id) => replicationKeys().settle(id),
      }
    : undefined;
  const core = await openPeerCore({
    ...(keyReplication !== undefined ? { replication: keyReplication } : {}),
    kekStore: controlKekStore(control, (project) => legacyKeks?.(project) ?? Promise.resolve(undefined)),
    dataDir: resolvePeerPath(dir, config, "data"),
    masterKey: protector,
    clusterSalt: Buffer.from(config.clusterSalt, "hex"),
    partitionPower: config.partitionPower,
    clock,
    store: { ...config.store, onBatch: (b) => metrics.groupCommit(b) },
    grantsPerKeyMax: config.keys.grantsPerKeyMax,
    audit: {
      log: logFor("audit", "error"),
      retention: { recordsMax: config.audit.recordsMax, ageMaxMs: config.audit.ageMaxDays * 86_400_000 },
      refusals: { windowMs: config.audit.refusalWindowMs, keysMax: config.audit.refusalKeysMax },
      ...(auditExport !== undefined ? { exportRecord: (r) => auditExport.write(r) } : {}),
    },
  }).catch(async (err: unknown) => {
    await auditExport?.close();
    throw err;
  });
  const refusedCalls = new RefusedCallLog(logs.refusedCalls, { windowMs: config.log.refusedCallWindowMs });
  let stopRaft = async (): Promise<void> => {};
  let duties: LeaderDuties | undefined;
  let stopMetrics = async (): Promise<void> => {};
  let healthTimer: NodeJS.Timeout | undefined;
  let stopRest = async (): Promise<void> => {};
  let stopEpochs = async (): Promise<void> => {};
  let replicationTimer: NodeJS.Timeout | undefined;
  let stopAttestation = async (): Promise<void> => {};
  let stopReenrolment = (): void => {};
  const close = async (): Promise<void> => {
    stopReenrolment();
    await stopRest();
    duties?.stop();
    await stopEpochs();
    await stopAttestation();
    clearInterval(healthTimer);
    clearInterval(replicationTimer);
    await replicationNode?.close();
    refusedCalls.flush();
    await stopMetrics();
    await stopRaft();
    await core.close();
    await auditExport?.close();
    // Last, after everything that might use the TPM: a swtpm keeps its clock safe across its next stop.
    await tpm
      ?.shutdown()
      .catch((e: unknown) => logFor("tpm", "error")(`tpm: Shutdown(STATE) failed: ${String(e)}`));
  };
  try {
    const { barrier, keys, audit } = core;
    // The raft node shares the store (its `raft` sublevel) and, below, the server and its TLS.
    const { startPeerRaft } = await raftModule;
    legacyKeks = (project) => core.store.get("meta", kekMetaKey(project));
    // The control state admits peers and clients by membership and revocation, and serves proposals
    // forwarded to the leader.
    const raftLog = logFor("raft", "warn");
    let refusedBy = (_peer: string, _code: PeerRefusalCode, _details: string): void => {};
    const raft = await startPeerRaft<ControlResult>({
      peerId: config.peerId,
      store: core.store,
      tls,
      log: raftLog,
      limits: config.raft,
      stateMachine: control.state,
      admitPeer: (peer) => control.peerRefusal(peer),
      onRefusedByPeer: (peer, code, details) => refusedBy(peer, code, details),
      extraHandlers: () => ({ Propose: control.proposeHandler() }),
      ...(config.peerDialOverrides !== undefined ? { dialOverrides: config.peerDialOverrides } : {}),
      // Fail-stop: the raft node stops writing and says so in status; keys are served as before.
      onFatal: (e) =>
        logFor("raft", "error")(`raft: stopped on an error: ${e instanceof Error ? e.message : String(e)}`),
    });
    stopRaft = () => raft.stop();
    for (const [id, address] of Object.entries(config.seedPeers ?? {}))
      raft.transport.setPeerAddress(id, address);
    control.attach(raft.driver, raft.transport);
    if (config.replication.enabled) {
      const node = await ReplicationNode.open({
        self: config.peerId,
        store: core.store,
        clusterSalt: Buffer.from(config.clusterSalt, "hex"),
        partitionPower: config.partitionPower,
        tls,
        admitPeer: (peer) => control.admitPeer(peer),
        tunables: config.replication,
        nowMs: () => clock.now().getTime(),
        log: logFor("replication", "warn"),
        ...(config.peerDialOverrides !== undefined ? { dialOverrides: config.peerDialOverrides } : {}),
      });
      replicationNode = node;
      const sync = (): void => node.sync(clusterView(control.state));
      control.state.onChange(sync);
      sync();
    }
    const cluster = new ClusterAdmin({
      control,
      barrier,
      clock,
      caCertificatePem: tls.caCertificatePem,
      allowUnattestedMembers: config.allowUnattestedMembersForTests === true,
    });
    // The CA key file exists on the founding peer (init wrote it); the leader moves it, wrapped under
    // the CMK, into the control state, from where every member can issue certificates.
    const caKeyPem = await readFile(resolvePeerPath(dir, config, "caKey"), "utf8").catch(() => undefined);
    // The founder's TPM identity (init --tpm): the leader records it attested, so it is re-quoted.
    const founderAttestation = await readFounderAttestation(resolve(dir, FOUNDER_ATTESTATION_FILE));
    const ownSerial = new X509Certificate(tls.certificatePem).serialNumber.toUpperCase();
    const startedAt = clock.now();
    const description = protector.describe();
    // Continuous attestation (issue 9 item 5): re-quotes, fencing, and whether this peer is fenced.
    const authority = new ControlJoinAuthority(control, barrier, clock, config.clusterId);
    // The join's authority also hands a joiner the ring parameters its config.json needs.
    const joinAuthority = new ControlJoinAuthority(control, barrier, clock, config.clusterId, {
      partitionPower: config.partitionPower,
      clusterSalt: config.clusterSalt,
      replicationEnabled: config.replication.enabled,
    });
    const attestationIntervalMs = options.attestationIntervalMs ?? config.attestation.intervalMs;
    // A new TPM `lockbox recover` proved for this peer is committed once the control state has a leader.
    const reenrolment = await startPendingReenrolment({
      dir,
      peerId: config.peerId,
      clusterId: config.clusterId,
      control,
      barrier,
      tpm,
      audit,
      nowMs: () => clock.now().getTime(),
      log: logFor("attestation", "warn"),
    });
    stopReenrolment = () => reenrolment.stop();
    const attestation = continuousAttestation({
      peerId: config.peerId,
      control,
      authority,
      tls,
      tpm,
      audit,
      intervalMs: attestationIntervalMs,
      timeoutMs: Math.min(config.attestation.timeoutMs, Math.floor(attestationIntervalMs / 2)),
      canAct: () => !barrier.sealed,
      onCheck: (r) => metrics.attestation.result(r),
      log: logFor("attestation", "warn"),
      notAnswering: () => reenrolment.pending(),
      ...(config.peerDialOverrides !== undefined ? { dialOverrides: config.peerDialOverrides } : {}),
    });
    refusedBy = attestation.refusedBy;
    stopAttestation = () => attestation.stop();
    const readiness = () => {
      if (barrier.sealed) return { ready: false, reason: "sealed" };
      const self = attestation.self();
      return self.fenced ? { ready: false, reason: `fenced: ${self.reason}` } : { ready: true, reason: "" };
    };
    let metricsAddress: string | undefined;
    if (metricsModules !== undefined) {
      const [{ createPeerMetrics }, { startOpsListener }] = await metricsModules;
      const peerMetrics = createPeerMetrics(
        {
          sealed: () => barrier.sealed,
          masterKeyEpoch: () => (barrier.sealed ? 0 : barrier.activeEpoch),
          raft: () => raft.status(),
        },
        { peerId: config.peerId },
      );
      const listener = await startOpsListener({
        listen: metricsListen,
        scrape: () => peerMetrics.scrape(),
        readiness,
      });
      metrics = peerMetrics;
      if (replicationNode !== undefined) peerMetrics.replication.attach(replicationNode);
      metricsAddress = listener.address;
      stopMetrics = async () => {
        peerMetrics.close();
        await listener.close();
      };
    }
    const { startLockboxServer, callObserver } = await serverModule;
    // One bound on calls in flight per identity, whichever edge they come through.
    const parts = options.replaceParts?.({ keys, audit });
    // A fenced peer serves no key calls, through either edge (edge/fenced-peer-guard.ts).
    const servedKeys = guardKeyCalls(parts?.keys ?? keys, () => {
      const self = attestation.self();
      return self.fenced ? self.reason : null;
    });
    const inFlight = new InFlightLimit(
      parts?.limits?.callsInFlightPerIdentityMax ?? config.edge.callsInFlightPerIdentityMax,
    );
    if (logs.logger !== undefined) {
      const { routeGrpcLogs } = await import("../logging/grpc-log-route.js");
      routeGrpcLogs(await import("@grpc/grpc-js"), logs.logger);
    }
    // The attested join over the control state (ControlJoinAuthority), or over the authority a test gives.
    const joinOptions: JoinEndpointOptions | undefined =
      options.join ??
      (options.joinWithControlState === undefined
        ? undefined
        : {
            authority: joinAuthority,
            manufacturerCas: options.joinWithControlState.manufacturerCas,
            ...(options.joinWithControlState.afterAdmit !== undefined
              ? { afterAdmit: options.joinWithControlState.afterAdmit }
              : {}),
          });
    // CMK epochs: the keeper, the attested delivery service, the rotation (master-key-epochs.ts).
    const epochs = startMasterKeyEpochs({
      config,
      control,
      core,
      protector,
      tpm,
      tls,
      clock,
      log: logFor("master-key", "warn"),
    });
    stopEpochs = () => epochs.stop();
    const join =
      joinOptions === undefined
        ? undefined
        : (await import("../attestation/join-endpoint.js")).joinEndpoint(joinOptions, {
            audit,
            caCertificatePem: tls.caCertificatePem,
            clock,
            log: logFor("attestation", "warn"),
          });
    const observeCall = (c: ObservedCall): void => {
      metrics.call(c);
      refusedCalls.note({ status: c.status, method: `/${c.service}/${c.method}`, source: c.source });
    };
    const server = await startLockboxServer(
      {
        tls,
        inFlight,
        audit,
        clock,
        log: logFor("edge", "error"),
        limits: config.edge,
        interceptors: [callObserver(observeCall)],
        observeBatchedCall: observeCall,
        peerServices: [
          raft.service,
          epochs.service,
          ...(join === undefined ? [] : [join]),
          ...(replicationNode === undefined ? [] : [replicationNode.peerService()]),
          ...(attestation.service === undefined ? [] : [attestation.service]),
        ],
        admitClient: (identity, serial) => control.clientRefusal(identity, serial),
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
            attestation: attestationStatus(control.state.member(config.peerId), attestation.self()),
          }),
          listAuditEvents: (req) => audit.list(req),
          cluster,
          masterKey: epochs.admin,
          ...(replicationNode !== undefined
            ? {
                ring: () => replicationNode!.ringView(control.state.ring(), config.replication.minPartHours),
              }
            : {}),
        },
        ...parts,
        keys: servedKeys,
      },
      options.listen ?? config.listen,
    );
    duties = new LeaderDuties({
      control,
      policy: config.autopilot,
      joinConfirmTimeoutMs: options.joinConfirmTimeoutMs ?? config.autopilot.joinConfirmTimeoutMs,
      ...(config.replication.enabled
        ? {
            ring: new RingDuty({
              partitionPower: config.partitionPower,
              replicas: config.replication.replicas,
              minPartHours: config.replication.minPartHours,
            }),
          }
        : {}),
      log: logFor("control", "warn"),
      facts: () =>
        barrier.sealed
          ? undefined
          : {
              peerId: config.peerId,
              address: config.advertise ?? server.address,
              certificateSerial: ownSerial,
              nowMs: clock.now().getTime(),
              cmkEpoch: barrier.activeEpoch,
              ...(founderAttestation !== undefined ? { attestation: founderAttestation } : {}),
              ...(caKeyPem !== undefined
                ? {
                    ca: () => ({
                      certificatePem: tls.caCertificatePem,
                      wrappedKey: wrapCaKey(barrier, caKeyPem).wrappedKey,
                    }),
                  }
                : {}),
            },
    });
    duties.start();
    if (replicationNode !== undefined) {
      const node = replicationNode;
      node.start();
      // A peer restarted on another port says where it is now (the leader does so for itself), so the
      // other peers' replication links and raft transport find it; the sync is a backstop for missed changes.
      let lastAddressProposalMs = 0;
      replicationTimer = setInterval(() => {
        node.sync(clusterView(control.state));
        const me = control.state.member(config.peerId);
        const nowMs = Date.now();
        if (
          me !== undefined &&
          me.state !== "removed" &&
          me.address !== (config.advertise ?? server.address) &&
          !control.isLeader() &&
          nowMs - lastAddressProposalMs > 2_000
        ) {
          lastAddressProposalMs = nowMs;
          control
            .propose({
              type: "member.address",
              id: config.peerId,
              address: config.advertise ?? server.address,
            })
            .catch(() => {});
        }
      }, 1_000);
      replicationTimer.unref();
    }
    attestation.start();
    // Health follows the seal and the fence as they change; the timer is only a backstop.
    let serving: boolean | undefined;
    const syncHealth = (): void => {
      const ready = readiness().ready;
      if (ready === serving) return;
      serving = ready;
      server.setServing(ready);
    };
    barrier.onSeal(syncHealth);
    attestation.onFenceChange(syncHealth);
    healthTimer = setInterval(syncHealth, HEALTH_SYNC_MS);
    healthTimer.unref();
    syncHealth();
    let restAddress: string | undefined;
    if (config.rest !== undefined) {
      const { startRest } = await import("../rest/start-rest.js");
      const rest = await startRest({
        config: config.rest,
        dir,
        ...(options.restListen !== undefined ? { listen: options.restListen } : {}),
        tls,
        keys: servedKeys,
        store: core.store,
        barrier,
        pipeline: { audit: parts?.audit ?? audit, log: parts?.log ?? logFor("rest", "error") },
        inFlight,
        clock,
        limits: config.restLimits,
      }).catch(async (e: unknown) => {
        await server.close(0);
        throw e;
      });
      stopRest = () => rest.close();
      restAddress = rest.address;
    }
    return runningPeer(config, server, tpm, close, {
      metricsAddress,
      metrics,
      restAddress,
      log: logFor("peer", "info"),
      seal: () => barrier.seal(),
    });
  } catch (err) {
    await close();
    throw err;
  }
}

interface PeerLogs {
  /** The pino logger, when the peer logs JSON (not when the caller gave a plain `log`). */
  logger: Logger | undefined;
  logFor(component: string, level: Exclude<LogLevel, "silent">): (line: string) => void;
  refusedCalls(summary: import("../logging/refused-call-log.js").RefusedCallSummary): void;
}

async function peerLogs(
  options: StartPeerOptions,
  config: PeerConfig,
  loggerModule: Promise<typeof import("../logging/logger.js")> | undefined,
): Promise<PeerLogs> {
  const plain = options.log;
  if (plain !== undefined || loggerModule === undefined) {
    const write = plain ?? ((line: string) => process.stderr.write(line + "\n"));
    return {
      logger: undefined,
      logFor: () => write,
      refusedCalls: (s) =>
        write(`lockbox: refused ${s.total} calls in ${s.windowMs} ms: ${JSON.stringify(s)}`),
    };
  }
  const { createLogger, lineLog } = await loggerModule;
  const logger = createLogger({ level: options.logLevel ?? config.log.level, base: { peer: config.peerId } });
  const edge = logger.child({ component: "edge" });
  return {
    logger,
    logFor: (component, level) => lineLog(logger, component, level),
    refusedCalls: (s) =>
      edge.warn({ event: "calls_refused", ...s }, `refused ${s.total} calls in the last ${s.windowMs} ms`),
  };
}

function runningPeer(
  config: PeerConfig,
  server: RunningServer,
  tpm: PeerTpm | undefined,
  cleanup: () => Promise<void>,
  extra: Pick<RunningPeer, "metricsAddress" | "metrics" | "log" | "seal"> & {
    restAddress: string | undefined;
  },
): RunningPeer {
  let closing: Promise<void> | undefined;
  const { restAddress, ...rest } = extra;
  return {
    ...(restAddress !== undefined ? { restAddress } : {}),
    address: server.address,
    port: server.port,
    peerId: config.peerId,
    clusterId: config.clusterId,
    tpm,
    ...rest,
    close(drainMs?: number) {
      closing ??= (async () => {
        await server.close(drainMs);
        await cleanup();
      })();
      return closing;
    },
  };
}

/** The control state as replication needs it: the ring, and where the members that hold data listen. */
function clusterView(state: ControlState): ClusterView {
  const addresses = new Map<string, string>();
  for (const m of state.members()) {
    if (m.state === "active" || m.state === "down" || m.state === "leaving" || m.state === "joining")
      addresses.set(m.id, m.address);
  }
  return { ring: state.ring(), addresses };
}
