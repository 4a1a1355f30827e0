/**
 * Admission of a lockbox call at its headers, before grpc-js reads its body
 * (a grpc-js server interceptor): a call without a valid client certificate
 * is answered UNAUTHENTICATED at once, and an identity with too many calls
 * in flight gets RESOURCE_EXHAUSTED, so neither can make the peer buffer a
 * request. Health and reflection stay open to any TLS client. Refusals are
 * reported to `onRefused` (aggregated audit, connection budget), never
 * written one by one.
 */
import * as grpc from "@grpc/grpc-js";
import type { Clock } from "../time/clock.js";
import type { ClientCertificateVerifier } from "../pki/client-certificate-verifier.js";
import { authenticate } from "./authenticate.js";
import type { InFlightLimit } from "../edge/in-flight.js";
import { toGrpcStatus } from "./grpc-status.js";

export interface RefusedCall {
  /** The method's name, e.g. "GetKey". */
  readonly operation: string;
  /** Remote address (no port) of the connection, or the identity when it was authenticated. */
  readonly source: string;
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  /** "UNAUTHENTICATED" or "RESOURCE_EXHAUSTED". */
  readonly status: "UNAUTHENTICATED" | "RESOURCE_EXHAUSTED";
  /** Why, in words the refused client also got. */
  readonly reason: string;
}

export interface CallAdmissionOptions {
  verifier: ClientCertificateVerifier;
  clock: Clock;
  /** Calls in flight per identity (shared with the REST edge: src/edge/in-flight.ts). */
  inFlight: InFlightLimit;
  /** Paths under admission control; the others (health, reflection) pass untouched. */
  guards(path: string): boolean;
  onRefused(refusal: RefusedCall): void;
}

export interface CallAdmission {
  readonly interceptor: grpc.ServerInterceptor;
  /** Calls in flight per identity right now (for status and tests). */
  inFlight(identity: string): number;
}

export function callAdmission(options: CallAdmissionOptions): CallAdmission {
  const { inFlight } = options;

  const interceptor: grpc.ServerInterceptor = (method, call) => {
    if (!options.guards(method.path)) return new grpc.ServerInterceptingCall(call);
    const operation = method.path.slice(method.path.lastIndexOf("/") + 1);
    let release = (): void => {};
    const refuse = (status: RefusedCall["status"], reason: string, source: string): void => {
      const info = call.getConnectionInfo();
      options.onRefused({
        operation,
        source,
        remoteAddress: info.remoteAddress,
        remotePort: info.remotePort,
        status,
        reason,
      });
      call.sendStatus({ code: grpc.status[status], details: reason, metadata: new grpc.Metadata() });
    };
    const intercepted: grpc.ServerInterceptingCall = new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMetadata) {
            let identity: string;
            try {
              identity = authenticate(call, options.verifier, options.clock.now()).identity;
            } catch (err) {
              // Not passing the metadata on means the handler never starts and the body is never read.
              return refuse(
                "UNAUTHENTICATED",
                toGrpcStatus(err).details,
                call.getConnectionInfo().remoteAddress ?? "unknown",
              );
            }
            // A stream of batched calls (KeyService.Batch) holds no slot itself: each call in it
            // takes one (key-call-batch.ts); the streams are bounded per connection.
            if (method.requestStream) return nextMetadata(metadata);
            const releaseSlot = inFlight.acquire(identity);
            if (releaseSlot === undefined) {
              return refuse("RESOURCE_EXHAUSTED", inFlight.refusal(identity), identity);
            }
            release = releaseSlot;
            nextMetadata(metadata);
          },
          onCancel: () => release(),
        });
      },
      sendStatus(status, next) {
        release();
        next(status);
      },
    });
    return intercepted;
  };

  return { interceptor, inFlight: (identity) => inFlight.inFlight(identity) };
}
