/**
 * The calling side of the attestation services a member asks another member (a re-quote, an epoch
 * fetch): one gRPC client per member, over mTLS with this peer's own certificate, that accepts only
 * the server certificate of the member it meant to ask (as src/raft's peer links do), with a bound on
 * the answer's size. A client is made anew when the member's address in the control state changes.
 * What the answers mean, and how they are decoded with bounds, stays with each caller.
 */
import * as grpc from "@grpc/grpc-js";
import { pinnedPeerCredentials } from "../pki/pinned-peer-credentials.js";
import type { WireObject } from "./join-wire.js";

export interface MemberGrpcClientsOptions {
  readonly tls: { caCertificatePem: string; certificatePem: string; privateKeyPem: string };
  /** HOST:PORT of a member, from the control state; undefined when unknown. */
  addressOf(peerId: string): string | undefined;
  /** The service's client constructor (join-proto.ts), loaded on the first call. */
  service(): grpc.ServiceClientConstructor;
  /** The largest answer accepted, bytes. */
  readonly responseBytesMax: number;
  /** What a call to a member with no known address rejects with. */
  noAddress(peerId: string): Error;
}

type UnaryMethod = (
  request: WireObject,
  options: grpc.CallOptions,
  callback: (err: grpc.ServiceError | null, response: WireObject) => void,
) => void;

export class MemberGrpcClients {
  readonly #clients = new Map<string, { address: string; client: grpc.Client }>();

  constructor(private readonly options: MemberGrpcClientsOptions) {}

  /**
   * Calls `method` of the member `peerId`. Rejects with the grpc.ServiceError of an unanswered or
   * refused call, or with `noAddress(peerId)` before any call when its address is unknown.
   */
  async unary(peerId: string, method: string, request: WireObject, timeoutMs: number): Promise<WireObject> {
    const client = this.#client(peerId);
    const fn = (client as unknown as Record<string, UnaryMethod>)[method]!;
    return new Promise<WireObject>((resolve, reject) =>
      fn.call(client, request, { deadline: Date.now() + timeoutMs }, (err, res) =>
        err ? reject(err) : resolve(res),
      ),
    );
  }

  close(): void {
    for (const { client } of this.#clients.values()) client.close();
    this.#clients.clear();
  }

  #client(peerId: string): grpc.Client {
    const address = this.options.addressOf(peerId);
    if (address === undefined) throw this.options.noAddress(peerId);
    const known = this.#clients.get(peerId);
    if (known !== undefined && known.address === address) return known.client;
    known?.client.close();
    const { tls } = this.options;
    const credentials = pinnedPeerCredentials(tls, peerId);
    const Service = this.options.service();
    const client = new Service(address, credentials, {
      "grpc.max_receive_message_length": this.options.responseBytesMax,
      "grpc.ssl_target_name_override": "localhost",
      "grpc.default_authority": "localhost",
    });
    this.#clients.set(peerId, { address, client });
    return client;
  }
}
