/**
 * lockbox.v1.JoinService on the member's gRPC port: the one service a
 * caller without a client certificate may use beyond health and reflection
 * (the joiner has no certificate until it is admitted). It is served beside
 * the peer services, outside call admission (src/server/call-admission.ts
 * guards only keys and admin), so it bounds what such callers get itself:
 *
 * - the edge's limits on connections without a certificate (few, short-lived:
 *   unauthenticatedConnections*, src/server/edge-limits.ts), which a join
 *   must finish within;
 * - its own bound on join calls being worked on at once (callsInFlightMax),
 *   beyond which a call is refused at once as "joins-busy";
 * - the verifier's session table (join-sessions.ts): joins in progress,
 *   joins begun per second, a session's and a nonce's life;
 * - the server's receive limit on one message (REQUEST_BYTES_MAX).
 */
import * as grpc from "@grpc/grpc-js";
import type { JoinVerifierApi } from "./join-messages.js";
import { loadJoinService } from "./join-proto.js";
import { type JoinRefusal, joinRefusal } from "./join-refusal.js";
import type { JoinAuditSink } from "./join-verifier.js";
import {
  type WireObject,
  WireError,
  activationFromWire,
  admittedToWire,
  challengeToWire,
  confirmFromWire,
  confirmedToWire,
  helloFromWire,
  nonceToWire,
  quoteFromWire,
  refusalToWire,
} from "./join-wire.js";

export const JOIN_CALLS_IN_FLIGHT_MAX_DEFAULT = 8;

export interface JoinServiceOptions {
  readonly verifier: JoinVerifierApi;
  /** The cluster CA, handed to any caller: it is public, and the joiner checks its fingerprint. */
  readonly caCertificatePem: string;
  /** Where calls refused by this service's own bound are counted. */
  readonly audit: JoinAuditSink;
  readonly callsInFlightMax?: number;
}

export interface JoinServiceParts {
  readonly definition: grpc.ServiceDefinition;
  readonly implementation: grpc.UntypedServiceImplementation;
  /** Join calls being worked on now (tests). */
  inFlight(): number;
}

export function joinService(options: JoinServiceOptions): JoinServiceParts {
  const max = options.callsInFlightMax ?? JOIN_CALLS_IN_FLIGHT_MAX_DEFAULT;
  if (!Number.isSafeInteger(max) || max < 1)
    throw new RangeError("callsInFlightMax must be a positive integer");
  let inFlight = 0;

  /** One join step: bounded, decoded, answered with the next step or a refusal; never a thrown error. */
  const step =
    <T>(
      decode: (req: WireObject) => T,
      run: (
        message: T,
        source: string,
      ) => Promise<{ ok: true; value: unknown } | { ok: false; refusal: JoinRefusal }>,
      encode: (value: never) => WireObject,
    ): grpc.handleUnaryCall<WireObject, WireObject> =>
    (call, callback) => {
      const source = sourceOf(call.getPeer());
      const refuse = (r: JoinRefusal) => callback(null, { refusal: refusalToWire(r) });
      if (inFlight >= max) {
        options.audit.countRefusal({
          source,
          operation: "Join",
          status: "RESOURCE_EXHAUSTED",
          reason: "session/joins-busy",
        });
        return refuse(
          joinRefusal("joins-busy", { problem: `${inFlight} join calls in flight (at most ${max})` }),
        );
      }
      let message: T;
      try {
        message = decode(call.request);
      } catch (err) {
        if (err instanceof WireError) {
          options.audit.countRefusal({
            source,
            operation: "Join",
            status: "INVALID_ARGUMENT",
            reason: err.message,
          });
          return refuse(err.refusal);
        }
        return callback({ code: grpc.status.INTERNAL, details: "join: request could not be read" });
      }
      inFlight++;
      run(message, source)
        .then((r) => callback(null, r.ok ? encode(r.value as never) : { refusal: refusalToWire(r.refusal) }))
        .catch(() =>
          callback({ code: grpc.status.INTERNAL, details: "join: the verifier failed; retry later" }),
        )
        .finally(() => inFlight--);
    };

  const implementation: grpc.UntypedServiceImplementation = {
    GetClusterCa: ((_call, callback) => {
      callback(null, { ca_certificate_pem: options.caCertificatePem });
    }) as grpc.handleUnaryCall<WireObject, WireObject>,
    BeginJoin: step(helloFromWire, (m, s) => options.verifier.begin(m, s), challengeToWire),
    ActivateJoin: step(activationFromWire, (m, s) => options.verifier.activate(m, s), nonceToWire),
    AttestJoin: step(quoteFromWire, (m, s) => options.verifier.attest(m, s), admittedToWire),
    ConfirmJoin: step(confirmFromWire, (m, s) => options.verifier.confirm(m, s), confirmedToWire),
  };
  return { definition: loadJoinService().service, implementation, inFlight: () => inFlight };
}

/** "ipv4:127.0.0.1:5555", "127.0.0.1:5555" or "[::1]:5555" -> the address without its port. */
function sourceOf(peer: string): string {
  const p = peer.replace(/^ipv[46]:/, "");
  const bracket = /^\[([^\]]+)\]/.exec(p);
  if (bracket !== null) return bracket[1]!;
  const colon = p.lastIndexOf(":");
  return colon > 0 && p.indexOf(":") === colon ? p.slice(0, colon) : p;
}
