/**
 * The peer's gRPC server: KeyService and AdminService behind mTLS (client
 * certificates requested by TLS, verified per call), plus grpc.health.v1
 * and server reflection so that standard tools (buf curl, grpcurl) work.
 */
import * as grpc from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation } from "grpc-health-check";
import { LockboxError } from "../errors.js";
import { systemClock, type Clock } from "../time/clock.js";
import { describeHostPort, formatHostPort, parseHostPort } from "../net/host-port.js";
import { ClientCertificateVerifier } from "../pki/client-certificate-verifier.js";
import { type AdminApi, adminServiceHandlers } from "./admin-service-handlers.js";
import type { EdgeContext } from "./audited-unary.js";
import {
  ClientCertificateRequestingCredentials,
  type ServerTlsMaterial,
} from "./client-certificate-credentials.js";
import type { EdgeAuditSink } from "./edge-audit.js";
import { type KeyServiceApi, keyServiceHandlers } from "./key-service-handlers.js";
import { ADMIN_SERVICE_NAME, KEY_SERVICE_NAME, serverProtos } from "./proto-definitions.js";
import { withLinkedFileDescriptors } from "./reflection-descriptors.js";
import { withTolerantDeserializers } from "./undecodable-request.js";

/** The largest request the server accepts; every lockbox request fits in far less. */
export const REQUEST_BYTES_MAX = 64 * 1024;
/** How long close() lets in-flight calls finish before cutting them. */
export const DRAIN_TIMEOUT_MS_DEFAULT = 5_000;

export interface LockboxServerOptions {
  tls: ServerTlsMaterial;
  keys: KeyServiceApi;
  admin: AdminApi;
  audit: EdgeAuditSink;
  clock?: Clock;
  log?: (line: string) => void;
}

export interface RunningServer {
  /** "HOST:PORT" as bound (the real port when asked for port 0). */
  readonly address: string;
  readonly port: number;
  /** Stops accepting calls, lets in-flight ones finish (at most drainMs), then closes. */
  close(drainMs?: number): Promise<void>;
}

/** Starts serving on `listen` ("HOST:PORT"; port 0 picks a free one). */
export async function startLockboxServer(
  options: LockboxServerOptions,
  listen: string,
): Promise<RunningServer> {
  const host = parseHostPort(listen, { portZero: true })?.host;
  if (host === undefined) {
    throw new RangeError(
      `listen address must be ${describeHostPort({ portZero: true })}, got ${JSON.stringify(listen)}`,
    );
  }
  const protos = serverProtos();
  const ctx: EdgeContext = {
    verifier: new ClientCertificateVerifier(options.tls.caCertificatePem),
    audit: options.audit,
    clock: options.clock ?? systemClock,
    log: options.log ?? ((line) => process.stderr.write(line + "\n")),
  };
  const server = new grpc.Server({
    "grpc.max_receive_message_length": REQUEST_BYTES_MAX,
    "grpc.max_concurrent_streams": 1024,
  });
  server.addService(withTolerantDeserializers(protos.keyService), keyServiceHandlers(options.keys, ctx));
  server.addService(withTolerantDeserializers(protos.adminService), adminServiceHandlers(options.admin, ctx));

  // Health and reflection describe the peer, not keys: they are open to any
  // TLS client, like a load balancer's probe. They reveal no key data.
  const health = new HealthImplementation({
    "": "SERVING",
    [KEY_SERVICE_NAME]: "SERVING",
    [ADMIN_SERVICE_NAME]: "SERVING",
  });
  health.addToServer(server);
  // Reflection describes the lockbox services. Not grpc.health.v1: proto-loader's
  // descriptor of its map field is not one Go clients accept; health tools do not
  // need reflection (or pass grpc-health-check's health.proto as --schema).
  new ReflectionService(withLinkedFileDescriptors(protos.all)).addToServer(server);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(listen, new ClientCertificateRequestingCredentials(options.tls), (err, boundPort) =>
      err
        ? reject(
            new LockboxError("UNAVAILABLE", `cannot listen on ${listen}: ${err.message}`, undefined, {
              cause: err,
            }),
          )
        : resolve(boundPort),
    );
  });
  const address = formatHostPort({ host, port });

  let closing: Promise<void> | undefined;
  return {
    address,
    port,
    close(drainMs = DRAIN_TIMEOUT_MS_DEFAULT) {
      closing ??= new Promise<void>((resolve) => {
        for (const name of ["", KEY_SERVICE_NAME, ADMIN_SERVICE_NAME]) health.setStatus(name, "NOT_SERVING");
        const timer = setTimeout(() => server.forceShutdown(), drainMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      return closing;
    },
  };
}
