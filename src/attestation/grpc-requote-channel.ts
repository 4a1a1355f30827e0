/**
 * The monitor's way to re-quote another member: lockbox.v1.AttestationService
 * over mTLS with this peer's own certificate, accepting only the server
 * certificate of the member it meant to ask (as src/raft's peer links do).
 * An unanswered call (timeout, connection refused) rejects, which the monitor
 * reads as "down"; an answer is decoded with bounds and checked by the monitor.
 */
import type { ServiceError } from "@grpc/grpc-js";
import { peerRefusalCodeOf, type PeerRefusalCode } from "../pki/peer-refusal.js";
import type { RequoteChannel } from "./attestation-monitor.js";
import { loadAttestationService } from "./join-proto.js";
import type { WireObject } from "./join-wire.js";
import { MemberGrpcClients } from "./member-grpc-clients.js";
import type { RequoteAnswer } from "./requote.js";

const RESPONSE_BYTES_MAX = 16 * 1024;
const READINGS_MAX = 8 * 24;

export interface GrpcRequoteChannelOptions {
  readonly tls: { caCertificatePem: string; certificatePem: string; privateKeyPem: string };
  /** HOST:PORT of a member, from the control state; undefined when unknown. */
  addressOf(peerId: string): string | undefined;
  /** The member refused this peer's re-quote with a structured refusal (this peer is fenced, removed, ...). */
  onRefused?: (peerId: string, code: PeerRefusalCode, details: string) => void;
}

export class GrpcRequoteChannel implements RequoteChannel {
  readonly #members: MemberGrpcClients;

  constructor(private readonly options: GrpcRequoteChannelOptions) {
    const noAddress = (peerId: string): Error =>
      Object.assign(new Error(`no address for ${peerId}`), { code: "NO_ADDRESS" });
    this.#members = new MemberGrpcClients({
      ...options,
      service: loadAttestationService,
      responseBytesMax: RESPONSE_BYTES_MAX,
      noAddress,
    });
  }

  async requote(
    peerId: string,
    request: { nonce: Uint8Array; pcrs: readonly { hashAlg: number; pcr: number }[] },
    timeoutMs: number,
  ): Promise<RequoteAnswer> {
    const wire = {
      nonce: Buffer.from(request.nonce),
      pcrs: request.pcrs.map((p) => ({ hash_alg: p.hashAlg, pcr: p.pcr })),
    };
    const response = await this.#members.unary(peerId, "Requote", wire, timeoutMs).catch((err: unknown) => {
      const code = peerRefusalCodeOf(err);
      if (code !== undefined) this.options.onRefused?.(peerId, code, (err as ServiceError).details);
      throw err;
    });
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
    this.#members.close();
  }
}
