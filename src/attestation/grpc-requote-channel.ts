/**
 * The monitor's way to re-quote another member: lockbox.v1.AttestationService
 * over mTLS with this peer's own certificate, accepting only the server
 * certificate of the member it meant to ask (as src/raft's peer links do).
 * An unanswered call (timeout, connection refused) rejects, which the monitor
 * reads as "down"; an answer is decoded with bounds and checked by the monitor.
 */
import * as grpc from "@grpc/grpc-js";
import { X509Certificate } from "node:crypto";
import { checkServerIdentity } from "node:tls";
import { peerIdOf } from "../pki/peer-certificate-verifier.js";
import { peerRefusalCodeOf, type PeerRefusalCode } from "../pki/peer-refusal.js";
import type { RequoteChannel } from "./attestation-monitor.js";
import { loadAttestationService } from "./join-proto.js";
import type { WireObject } from "./join-wire.js";
import type { RequoteAnswer } from "./requote.js";

const RESPONSE_BYTES_MAX = 16 * 1024;
const READINGS_MAX = 8 * 24;

type UnaryMethod = (
  request: WireObject,
  options: grpc.CallOptions,
  callback: (err: grpc.ServiceError | null, response: WireObject) => void,
) => void;

export interface GrpcRequoteChannelOptions {
  readonly tls: { caCertificatePem: string; certificatePem: string; privateKeyPem: string };
  /** HOST:PORT of a member, from the control state; undefined when unknown. */
  addressOf(peerId: string): string | undefined;
  /** The member refused this peer's re-quote with a structured refusal (this peer is fenced, removed, ...). */
  onRefused?: (peerId: string, code: PeerRefusalCode, details: string) => void;
}

export class GrpcRequoteChannel implements RequoteChannel {
  readonly #clients = new Map<string, { address: string; client: grpc.Client }>();

  constructor(private readonly options: GrpcRequoteChannelOptions) {}

  async requote(
    peerId: string,
    request: { nonce: Uint8Array; pcrs: readonly { hashAlg: number; pcr: number }[] },
    timeoutMs: number,
  ): Promise<RequoteAnswer> {
    const client = this.#client(peerId);
    const requote = (client as unknown as Record<string, UnaryMethod>).Requote!;
    const response = await new Promise<WireObject>((resolve, reject) =>
      requote.call(
        client,
        {
          nonce: Buffer.from(request.nonce),
          pcrs: request.pcrs.map((p) => ({ hash_alg: p.hashAlg, pcr: p.pcr })),
        },
        { deadline: Date.now() + timeoutMs },
        (err, res) => {
          if (!err) return resolve(res);
          const code = peerRefusalCodeOf(err);
          if (code !== undefined) this.options.onRefused?.(peerId, code, err.details);
          reject(err);
        },
      ),
    );
    const readings = Array.isArray(response.pcr_values)
      ? (response.pcr_values as WireObject[]).slice(0, READINGS_MAX)
      : [];
    return {
      attest: response.attest instanceof Uint8Array ? response.attest : new Uint8Array(0),
      signature: response.signature instanceof Uint8Array ? response.signature : new Uint8Array(0),
      pcrValues: readings.map((r) => ({
        hashAlg: typeof r.hash_alg === "number" ? r.hash_alg : 0,
        pcr: typeof r.pcr === "number" ? r.pcr : -1,
        value: r.value instanceof Uint8Array ? r.value : new Uint8Array(0),
      })),
    };
  }

  close(): void {
    for (const { client } of this.#clients.values()) client.close();
    this.#clients.clear();
  }

  #client(peerId: string): grpc.Client {
    const address = this.options.addressOf(peerId);
    if (address === undefined)
      throw Object.assign(new Error(`no address for ${peerId}`), { code: "NO_ADDRESS" });
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
    const AttestationService = loadAttestationService();
    const client = new AttestationService(address, credentials, {
      "grpc.max_receive_message_length": RESPONSE_BYTES_MAX,
      "grpc.ssl_target_name_override": "localhost",
      "grpc.default_authority": "localhost",
    });
    this.#clients.set(peerId, { address, client });
    return client;
  }
}
