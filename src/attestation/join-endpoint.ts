/**
 * A member's join endpoint, as the composition root (src/peer/start-peer.ts)
 * serves it: the verifier over a JoinAuthority, behind lockbox.v1.JoinService.
 */
import type { X509Certificate } from "node:crypto";
import type { Clock } from "../time/clock.js";
import type { JoinAuthority } from "./join-authority.js";
import type { JoinSessionLimits } from "./join-sessions.js";
import { type JoinServiceParts, joinService } from "./join-service.js";
import { type JoinAuditSink, JoinVerifier } from "./join-verifier.js";

export interface JoinEndpointOptions {
  readonly authority: JoinAuthority;
  /** Manufacturer CA certificates (roots and intermediates) that EK certificates must chain to. */
  readonly manufacturerCas: readonly X509Certificate[];
  readonly limits?: Partial<JoinSessionLimits>;
  readonly callsInFlightMax?: number;
  /** TESTS ONLY: JoinVerifierOptions.afterAdmit. */
  readonly afterAdmit?: (peerId: string) => Promise<void>;
}

export function joinEndpoint(
  options: JoinEndpointOptions,
  peer: { audit: JoinAuditSink; caCertificatePem: string; clock: Clock; log: (line: string) => void },
): JoinServiceParts & { verifier: JoinVerifier } {
  const verifier = new JoinVerifier({
    authority: options.authority,
    manufacturerCas: options.manufacturerCas,
    audit: peer.audit,
    clock: peer.clock,
    log: peer.log,
    ...(options.limits !== undefined ? { limits: options.limits } : {}),
    ...(options.afterAdmit !== undefined ? { afterAdmit: options.afterAdmit } : {}),
  });
  const service = joinService({
    verifier,
    caCertificatePem: peer.caCertificatePem,
    audit: peer.audit,
    ...(options.callsInFlightMax !== undefined ? { callsInFlightMax: options.callsInFlightMax } : {}),
  });
  return { ...service, verifier };
}
