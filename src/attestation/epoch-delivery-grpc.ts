/**
 * lockbox.v1.MasterKeyDeliveryService (join.proto; the protocol is epoch-delivery.ts), both ends:
 *
 * - the holder's service: only the TLS client certificate of a cluster peer (PeerCertificateVerifier)
 *   that `admitCaller` (the control state: a current, non-fenced member) accepts is served; anything
 *   else is refused before a nonce is made. At most a few fetches are in flight.
 * - the fetcher's channel: mTLS with this peer's own certificate, accepting only the server certificate
 *   of the member it meant to ask (member-grpc-clients.ts, shared with the re-quote channel).
 */
import * as grpc from "@grpc/grpc-js";
import type { PeerCertificate } from "node:tls";
import { LockboxError, isLockboxError } from "../errors.js";
import type { PeerCertificateVerifier, PeerIdentity } from "../pki/peer-certificate-verifier.js";
import type { WrappedCmk } from "./ephemeral-key-wrap.js";
import type {
  EpochDeliverer,
  EpochFetchChannel,
  EpochFetchQuote,
  EpochFetchStart,
} from "./epoch-delivery.js";
import type { JoinResult } from "./join-messages.js";
import { loadMasterKeyDeliveryService } from "./join-proto.js";
import {
  WireError,
  nonceFromWire,
  nonceToWire,
  quoteFromWire,
  refusalToWire,
  resultFromWire,
  type WireObject,
} from "./join-wire.js";
import { MemberGrpcClients } from "./member-grpc-clients.js";

const CALLS_IN_FLIGHT_MAX = 4;
const RESPONSE_BYTES_MAX = 16 * 1024;
const FETCH_TIMEOUT_MS = 10_000;

export interface EpochDeliveryServiceOptions {
  readonly deliverer: EpochDeliverer;
  readonly verifier: PeerCertificateVerifier;
  /** null to serve the peer; otherwise why not (fenced, removed, unknown, revoked certificate). */
  admitCaller(peer: PeerIdentity): string | null;
}

export function epochDeliveryService(options: EpochDeliveryServiceOptions): {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
} {
  let inFlight = 0;
  const guarded =
    (
      run: (peerId: string, req: WireObject) => Promise<WireObject>,
    ): grpc.handleUnaryCall<WireObject, WireObject> =>
    (call, callback) => {
      let peer: PeerIdentity;
      try {
        const cert = (call.getAuthContext() as { sslPeerCertificate?: PeerCertificate } | null)
          ?.sslPeerCertificate;
        peer = options.verifier.verify(cert?.raw);
      } catch (err) {
        if (!isLockboxError(err, "UNAUTHENTICATED")) throw err;
        return callback({
          code: grpc.status.UNAUTHENTICATED,
          details: `epoch fetch refused: ${err.message}`,
        });
      }
      const { peerId } = peer;
      const refusal = options.admitCaller(peer);
      if (refusal !== null) {
        return callback({
          code: grpc.status.PERMISSION_DENIED,
          details: `peer ${peerId} refused: ${refusal}`,
        });
      }
      if (inFlight >= CALLS_IN_FLIGHT_MAX) {
        return callback({
          code: grpc.status.RESOURCE_EXHAUSTED,
          details: "epoch fetches in flight; retry later",
        });
      }
      inFlight++;
      void run(peerId, call.request)
        .then((res) => callback(null, res))
        .catch((err: unknown) => {
          if (err instanceof WireError) return callback(null, { refusal: refusalToWire(err.refusal) });
          if (isLockboxError(err, "NOT_FOUND"))
            return callback({ code: grpc.status.NOT_FOUND, details: err.message });
          callback({ code: grpc.status.UNAVAILABLE, details: "epoch fetch failed on the holder; retry" });
        })
        .finally(() => inFlight--);
    };
  const BeginEpochFetch = guarded(async (peerId, req) => {
    const epoch = req.epoch;
    if (typeof epoch !== "number" || !Number.isInteger(epoch) || epoch < 1 || epoch > 0xffffffff) {
      throw new LockboxError("INVALID_ARGUMENT", "epoch: must be 1..2^32-1");
    }
    const r = await options.deliverer.begin(peerId, epoch);
    if (!r.ok) return { refusal: refusalToWire(r.refusal) };
    return { ...nonceToWire(r.value.nonce), session_id: Buffer.from(r.value.sessionId) };
  });
  const FetchEpoch = guarded(async (peerId, req) => {
    const q = quoteFromWire(req);
    const r = await options.deliverer.fetch(peerId, q);
    if (!r.ok) return { refusal: refusalToWire(r.refusal) };
    return {
      wrapped_cmk: {
        epoch: r.value.epoch,
        verifier_public_key: Buffer.from(r.value.verifierPublicKey),
        iv: Buffer.from(r.value.iv),
        ciphertext: Buffer.from(r.value.ciphertext),
      },
    };
  });
  return {
    definition: loadMasterKeyDeliveryService().service,
    implementation: { BeginEpochFetch, FetchEpoch },
  };
}

export interface GrpcEpochFetchChannelOptions {
  readonly tls: { caCertificatePem: string; certificatePem: string; privateKeyPem: string };
  /** HOST:PORT of a member, from the control state; undefined when unknown. */
  addressOf(peerId: string): string | undefined;
  readonly timeoutMs?: number;
}

export class GrpcEpochFetchChannel implements EpochFetchChannel {
  readonly #members: MemberGrpcClients;

  constructor(private readonly options: GrpcEpochFetchChannelOptions) {
    const noAddress = (peerId: string): Error =>
      new LockboxError("UNAVAILABLE", `no address for member ${peerId}`);
    this.#members = new MemberGrpcClients({
      ...options,
      service: loadMasterKeyDeliveryService,
      responseBytesMax: RESPONSE_BYTES_MAX,
      noAddress,
    });
  }

  async begin(holderId: string, epoch: number): Promise<JoinResult<EpochFetchStart>> {
    const res = await this.#call(holderId, "BeginEpochFetch", { epoch });
    return resultFromWire(res, "nonce", (o) => ({
      sessionId: res.session_id instanceof Uint8Array ? res.session_id : new Uint8Array(0),
      nonce: nonceFromWire(o),
    }));
  }

  async fetch(holderId: string, q: EpochFetchQuote): Promise<JoinResult<WrappedCmk>> {
    const res = await this.#call(holderId, "FetchEpoch", {
      session_id: Buffer.from(q.sessionId),
      attest: Buffer.from(q.attest),
      signature: Buffer.from(q.signature),
      pcr_values: q.pcrValues.map((v) => ({ hash_alg: v.hashAlg, pcr: v.pcr, value: Buffer.from(v.value) })),
      ephemeral_public_key: Buffer.from(q.ephemeralPublicKey),
    });
    return resultFromWire(res, "wrapped_cmk", (w) => {
      const bytes = (f: string): Uint8Array =>
        w[f] instanceof Uint8Array ? (w[f] as Uint8Array) : new Uint8Array(0);
      const epoch = w.epoch;
      if (typeof epoch !== "number" || !Number.isSafeInteger(epoch) || epoch < 1) {
        throw new LockboxError("INTERNAL", "the holder answered a wrapped CMK without a valid epoch");
      }
      return {
        epoch,
        verifierPublicKey: bytes("verifier_public_key"),
        iv: bytes("iv"),
        ciphertext: bytes("ciphertext"),
      };
    });
  }

  close(): void {
    this.#members.close();
  }

  #call(holderId: string, method: string, request: WireObject): Promise<WireObject> {
    return this.#members.unary(holderId, method, request, this.options.timeoutMs ?? FETCH_TIMEOUT_MS);
  }
}
