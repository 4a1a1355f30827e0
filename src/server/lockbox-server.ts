/**
 * The peer's gRPC server: KeyService and AdminService behind mTLS (client
 * certificates requested by TLS, verified at each call's headers), plus
 * grpc.health.v1 and server reflection so that standard tools (buf curl,
 * grpcurl) work. Connections come in through lockbox's own bounded TLS
 * listener (edge-listener.ts); every lockbox call passes call admission
 * (call-admission.ts) before its body is read. Bounds: edge-limits.ts.
 */
import * as grpc from "@grpc/grpc-js";
import type * as http2 from "node:http2";
import { createRequire } from "node:module";
import type { HealthImplementation, ServingStatus } from "grpc-health-check";
import { systemClock, type Clock } from "../time/clock.js";
import { describeHostPort, formatHostPort, parseHostPort } from "../net/host-port.js";
import { ClientCertificateVerifier } from "../pki/client-certificate-verifier.js";
import { type AdminApi, adminServiceHandlers } from "./admin-service-handlers.js";
import type { EdgeContext } from "./audited-unary.js";
import { callAdmission } from "./call-admission.js";
import type { ServerTlsMaterial } from "./client-certificate-credentials.js";
import {
  type EdgeLimits,
  REQUEST_BYTES_MAX,
  REQUEST_BYTES_MAX_BY_METHOD,
  edgeLimits,
} from "./edge-limits.js";
import { listenEdge } from "./edge-listener.js";
import type { EdgeAuditSink } from "../edge/edge-audit.js";
import { InFlightLimit } from "../edge/in-flight.js";
import { type KeyServiceApi, keyServiceHandlers } from "./key-service-handlers.js";
import { BatchStreams } from "./key-call-batch.js";
import type { ObservedCall } from "./call-observer.js";
import { ADMIN_SERVICE_NAME, KEY_SERVICE_NAME, serverProtos } from "./proto-definitions.js";
import { addLazyServices, type LazyServiceShapes } from "./lazy-service.js";
import { withLinkedFileDescriptors } from "./reflection-descriptors.js";
import { withTolerantDeserializers } from "./undecodable-request.js";

export { REQUEST_BYTES_MAX };
export { callObserver, type ObservedCall } from "./call-observer.js";

// Synchronous loading for the lazily built services (a deserializer cannot wait for an import).
const require = createRequire(import.meta.url);

/** grpc.health.v1 (grpc-health-check's health.proto). */
const HEALTH_SHAPES: LazyServiceShapes = {
  "grpc.health.v1.Health": {
    Check: { requestStream: false, responseStream: false },
    Watch: { requestStream: false, responseStream: true },
  },
};

/** Both versions @grpc/reflection serves (its reflection.proto files). */
const REFLECTION_SHAPES: LazyServiceShapes = {
  "grpc.reflection.v1.ServerReflection": {
    ServerReflectionInfo: { requestStream: true, responseStream: true },
  },
  "grpc.reflection.v1alpha.ServerReflection": {
    ServerReflectionInfo: { requestStream: true, responseStream: true },
  },
};

/** How long close() lets in-flight calls finish before cutting them. */
export const DRAIN_TIMEOUT_MS_DEFAULT = 5_000;

export interface LockboxServerOptions {
  tls: ServerTlsMaterial;
  keys: KeyServiceApi;
  admin: AdminApi;
  audit: EdgeAuditSink;
  clock?: Clock;
  log?: (line: string) => void;
  /** Overrides of EDGE_LIMITS_DEFAULT (edge-limits.ts). */
  limits?: Partial<EdgeLimits>;
  /**
   * Interceptors around every call, outside call admission (so they see its refusals too): the
   * peer's call observer (call-observer.ts) for metrics and the refused-call log.
   */
  interceptors?: readonly grpc.ServerInterceptor[];
  /**
   * Calls in flight per identity, when shared with another edge (the REST API); by default the
   * server keeps its own, bounded by limits.callsInFlightPerIdentityMax.
   */
  inFlight?: InFlightLimit;
  /**
   * Each call made inside a KeyService.Batch stream, as the call observer reports a unary call
   * (the interceptors see only the stream).
   */
  observeBatchedCall?: (call: ObservedCall) => void;
  /** Refuses client certificates the cluster revoked (ClientCertificateVerifier's `admit`). */
  admitClient?: (identity: string, serialNumber: string) => string | null;
  /**
   * Services served beside KeyService and AdminService that authenticate their callers themselves
   * (the peer's raft transport, lockbox.v1.PeerService: peer certificates only, src/raft). They get
   * the same TLS and the same REQUEST_BYTES_MAX bound.
   */
  peerServices?: readonly {
    definition: grpc.ServiceDefinition;
    implementation: grpc.UntypedServiceImplementation;
  }[];
}

export interface RunningServer {
  /** "HOST:PORT" as bound (the real port when asked for port 0). */
  readonly address: string;
  readonly port: number;
  /**
   * What grpc.health.v1 answers for the server and its services: NOT_SERVING while the peer
   * cannot serve keys (sealed). SERVING at start; close() sets NOT_SERVING for good.
   */
  setServing(serving: boolean): void;
  /** Stops accepting calls, lets in-flight ones finish (at most drainMs), then closes. */
  close(drainMs?: number): Promise<void>;
}

/** Starts serving on `listen` ("HOST:PORT"; port 0 picks a free one). */
export async function startLockboxServer(
  options: LockboxServerOptions,
  listen: string,
): Promise<RunningServer> {
  const parsed = parseHostPort(listen, { portZero: true });
  const host = parsed?.host;
  if (parsed === undefined || host === undefined) {
    throw new RangeError(
      `listen address must be ${describeHostPort({ portZero: true })}, got ${JSON.stringify(listen)}`,
    );
  }
  const protos = serverProtos();
  const ctx: EdgeContext = {
    verifier: new ClientCertificateVerifier(
      options.tls.caCertificatePem,
      options.admitClient !== undefined ? { admit: options.admitClient } : {},
    ),
    audit: options.audit,
    clock: options.clock ?? systemClock,
    log: options.log ?? ((line) => process.stderr.write(line + "\n")),
  };
  const limits = edgeLimits(options.limits);
  const guarded = new Set(
    [protos.keyService, protos.adminService].flatMap((service) => Object.values(service).map((m) => m.path)),
  );
  let noteRefusedCall: (address: string | undefined, port: number | undefined) => void = () => {};
  const inFlight = options.inFlight ?? new InFlightLimit(limits.callsInFlightPerIdentityMax);
  const admission = callAdmission({
    verifier: ctx.verifier,
    clock: ctx.clock,
    inFlight,
    guards: (path) => guarded.has(path),
    onRefused(refusal) {
      noteRefusedCall(refusal.remoteAddress, refusal.remotePort);
      ctx.audit.countRefusal({
        source: refusal.source,
        operation: refusal.operation,
        status: refusal.status,
        reason: refusal.reason,
      });
    },
  });
  const server = new grpc.Server({
    "grpc.max_receive_message_length": REQUEST_BYTES_MAX,
    "grpc.max_concurrent_streams": limits.streamsPerConnectionMax,
    "grpc-node.max_session_memory": limits.sessionMemoryMb,
    "grpc.max_connection_idle_ms": limits.connectionIdleMs,
    "grpc.keepalive_time_ms": 60_000,
    "grpc.keepalive_timeout_ms": 20_000,
    interceptors: [...(options.interceptors ?? []), admission.interceptor],
  });
  limitHeaderList(server, limits.headerListBytesMax);
  const strict = (service: typeof protos.keyService) =>
    withTolerantDeserializers(service, protos.messageDescriptor, (path) => REQUEST_BYTES_MAX_BY_METHOD[path]);
  const keyService = strict(protos.keyService);
  const batchStreams = new BatchStreams();
  server.addService(
    keyService,
    keyServiceHandlers(options.keys, ctx, keyService, {
      inFlight,
      streams: batchStreams,
      ...(options.observeBatchedCall !== undefined ? { observe: options.observeBatchedCall } : {}),
    }),
  );
  server.addService(
    strict(protos.adminService),
    adminServiceHandlers(options.admin, ctx, protos.adminService),
  );
  // Not behind call admission: these authenticate each call themselves (src/raft: peer certificates).
  for (const s of options.peerServices ?? []) server.addService(s.definition, s.implementation);

  // Health and reflection describe the peer, not keys: they are open to any
  // TLS client, like a load balancer's probe. They reveal no key data. Both are
  // built on their first call (lazy-service.ts): loading them costs a peer's start
  // a fifth of its time, for calls a probe or a tool makes later, if ever.
  const healthStatuses = new Map<string, ServingStatus>(
    ["", KEY_SERVICE_NAME, ADMIN_SERVICE_NAME].map((name) => [name, "SERVING"]),
  );
  let health: HealthImplementation | undefined;
  addLazyServices(server, HEALTH_SHAPES, (recorder) => {
    const { HealthImplementation } = require("grpc-health-check") as typeof import("grpc-health-check");
    health = new HealthImplementation(Object.fromEntries(healthStatuses));
    health.addToServer(recorder as grpc.Server);
  });
  // Reflection describes the lockbox services. Not grpc.health.v1: proto-loader's
  // descriptor of its map field is not one Go clients accept; health tools do not
  // need reflection (or pass grpc-health-check's health.proto as --schema).
  addLazyServices(server, REFLECTION_SHAPES, (recorder) => {
    const { ReflectionService } = require("@grpc/reflection") as typeof import("@grpc/reflection");
    new ReflectionService(withLinkedFileDescriptors(protos.all)).addToServer(recorder);
  });

  // TLS is done by the edge listener; grpc-js gets the established connections as they are.
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const listener = await listenEdge({
    host,
    port: parsed.port,
    tls: options.tls,
    limits,
    verifier: ctx.verifier,
    clock: ctx.clock,
    inject: (socket) => injector.injectConnection(socket),
    onRefusedConnection: (source, reason) =>
      ctx.audit.countRefusal({ source, operation: "(connection)", status: "RESOURCE_EXHAUSTED", reason }),
  });
  noteRefusedCall = (address, port) => listener.noteRefusedCall(address, port);
  const port = listener.port;
  const address = formatHostPort({ host, port });

  let closing: Promise<void> | undefined;
  const setHealth = (status: ServingStatus): void => {
    for (const name of healthStatuses.keys()) {
      if (healthStatuses.get(name) === status) continue;
      healthStatuses.set(name, status);
      health?.setStatus(name, status);
    }
  };
  return {
    address,
    port,
    setServing(serving) {
      if (closing === undefined) setHealth(serving ? "SERVING" : "NOT_SERVING");
    },
    close(drainMs = DRAIN_TIMEOUT_MS_DEFAULT) {
      closing ??= new Promise<void>((resolve) => {
        setHealth("NOT_SERVING");
        // Batch streams live as long as their clients: end them once their calls are answered.
        batchStreams.endAll();
        const listenerClosed = listener.stopAccepting();
        const timer = setTimeout(() => server.forceShutdown(), drainMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          void listener
            .close()
            .then(() => listenerClosed)
            .then(resolve);
        });
      });
      return closing;
    },
  };
}

/**
 * grpc-js has no option for HTTP/2's header list limit (node's default is 64 KiB per stream). Its
 * HTTP/2 servers are made from one options object, so set the limit there, before the connection
 * injector creates its server; fail loudly should a grpc-js upgrade move it (checked in 1.14).
 */
function limitHeaderList(server: grpc.Server, bytes: number): void {
  const common = (server as unknown as { commonServerOptions?: http2.ServerOptions }).commonServerOptions;
  if (typeof common !== "object" || common === null) {
    throw new Error("grpc-js no longer has Server.commonServerOptions: the header list limit cannot be set");
  }
  common.settings = { ...common.settings, maxHeaderListSize: bytes };
}
