/**
 * lockbox.v1.MasterKeyDeliveryService (join.proto; the protocol is epoch-delivery.ts), both ends:
 *
 * - the holder's service: only the TLS client certificate of a cluster peer (PeerCertificateVerifier)
 *   that `admitCaller` (the control state: a current, non-fenced member) accepts is served; anything
 *   else is refused before a nonce is made. At most a few fetches are in flight.
 * - the fetcher's channel: mTLS with this peer's own certificate, accepting only the server certificate
 *   of the member it meant to ask (as the raft links and the re-quote channel do).
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { X509Certificate } from "node:crypto";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import { fileURLToPath } from "node:url";
import { LockboxError, isLockboxError } from "../errors.js";
import {
  peerIdOf,
  type PeerCertificateVerifier,
  type PeerIdentity,
} from "../pki/peer-certificate-verifier.js";
import type { WrappedCmk } from "./ephemeral-key-wrap.js";
import type {
  EpochDeliverer,
  EpochFetchChannel,
  EpochFetchQuote,
  EpochFetchStart,
} from "./epoch-delivery.js";
import type { JoinResult } from "./join-messages.js";
import {
  WireError,
  nonceFromWire,
  nonceToWire,
  quoteFromWire,
  refusalToWire,
  resultFromWire,
  type WireObject,
} from "./join-wire.js";

const PROTO_DIR = fileURLToPath(new URL("../../../proto", import.meta.url));
const CALLS_IN_FLIGHT_MAX = 4;
const RESPONSE_BYTES_MAX = 16 * 1024;

let loaded: grpc.ServiceClientConstructor | undefined;

function loadService(): grpc.ServiceClientConstructor {
  if (loaded !== undefined) return loaded;
  const def = protoLoader.loadSync("lockbox/v1/join.proto", {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    lockbox: { v1: { MasterKeyDeliveryService: grpc.ServiceClientConstructor } };
  };
  loaded = pkg.lockbox.v1.MasterKeyDeliveryService;
  return loaded;
}

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
  return { definition: loadService().service, implementation: { BeginEpochFetch, FetchEpoch } };
}

type UnaryMethod = (
  request: WireObject,
  options: grpc.CallOptions,
  callback: (err: grpc.ServiceError | null, response: WireObject) => void,
) => void;

export interface GrpcEpochFetchChannelOptions {
  readonly tls: { caCertificatePem: string; certificatePem: string; privateKeyPem: string };
  /** HOST:PORT of a member, from the control state; undefined when unknown. */
  addressOf(peerId: string): string | undefined;
  readonly timeoutMs?: number;
}

export class GrpcEpochFetchChannel implements EpochFetchChannel {
  readonly #clients = new Map<string, { address: string; client: grpc.Client }>();

  constructor(private readonly options: GrpcEpochFetchChannelOptions) {}

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
    for (const { client } of this.#clients.values()) client.close();
    this.#clients.clear();
  }

  #call(holderId: string, method: string, request: WireObject): Promise<WireObject> {
    const client = this.#client(holderId);
    const fn = (client as unknown as Record<string, UnaryMethod>)[method]!;
    return new Promise<WireObject>((resolve, reject) =>
      fn.call(client, request, { deadline: Date.now() + (this.options.timeoutMs ?? 10_000) }, (err, res) =>
        err ? reject(err) : resolve(res),
      ),
    );
  }

  #client(peerId: string): grpc.Client {
    const address = this.options.addressOf(peerId);
    if (address === undefined) throw new LockboxError("UNAVAILABLE", `no address for member ${peerId}`);
    const known = this.#clients.get(peerId);
    if (known !== undefined && known.address === address) return known.client;
    known?.client.close();
    const { tls } = this.options;
    const credentials = grpc.credentials.createSsl(
      Buffer.from(tls.caCertificatePem),
      Buffer.from(tls.privateKeyPem),
      Buffer.from(tls.certificatePem),
      {
        checkServerIdentity: (host, cert) => {
          const hostError = checkServerIdentity(host, cert);
          if (hostError !== undefined) return hostError;
          const id = peerIdOf(new X509Certificate(cert.raw));
          return id === peerId ? undefined : new Error(`the server at ${host} is peer ${id}, not ${peerId}`);
        },
      },
    );
    const Service = loadService();
    const client = new Service(address, credentials, {
      "grpc.max_receive_message_length": RESPONSE_BYTES_MAX,
      "grpc.ssl_target_name_override": "localhost",
      "grpc.default_authority": "localhost",
    });
    this.#clients.set(peerId, { address, client });
    return client;
  }
}
