/**
 * The cluster CA's private key in the control state: wrapped under the CMK through the barrier, bound
 * to its role, so any member holding the CMK can issue certificates (identities, joining peers) and no
 * member keeps the key in the clear. The unwrapped PEM lives only for one signing.
 */
import type { Barrier } from "../crypto/barrier.js";
import type { EnvelopeBinding } from "../crypto/envelope.js";
import { LockboxError } from "../errors.js";
import { X509Certificate } from "node:crypto";
import { issuePeerCertificate, type CertifiedKey } from "../pki/certificate-authority.js";
import type { ControlState } from "./control-state.js";

export const CA_KEY_BINDING: EnvelopeBinding = { kind: "cluster-ca-key", id: "", attributes: {} };

export function wrapCaKey(barrier: Barrier, privateKeyPem: string): { wrappedKey: string; epoch: number } {
  const bytes = new TextEncoder().encode(privateKeyPem);
  try {
    return {
      wrappedKey: Buffer.from(barrier.wrap(bytes, CA_KEY_BINDING)).toString("base64"),
      epoch: barrier.activeEpoch,
    };
  } finally {
    bytes.fill(0);
  }
}

/** The CA (certificate and unwrapped key) from the control state; FAILED_PRECONDITION before it is there. */
export function clusterCaFrom(state: ControlState, barrier: Barrier): CertifiedKey {
  const ca = state.clusterCa();
  if (ca === null) {
    throw new LockboxError(
      "FAILED_PRECONDITION",
      "the control state holds no cluster CA yet; retry once the leader stored it",
    );
  }
  const key = barrier.unwrap(Buffer.from(ca.wrappedKey, "base64"), CA_KEY_BINDING);
  try {
    return { certificatePem: ca.certificatePem, privateKeyPem: new TextDecoder().decode(key) };
  } finally {
    key.fill(0);
  }
}

/**
 * A peer certificate for `peerId`, signed by the cluster CA from the control state: what the attested
 * join issues to a joiner once every check passed (then it proposes member.transition joining -> active
 * with the certificate's serial; the leader's autopilot adds the member to raft as a learner).
 */
export async function issuePeerCertificateFromState(
  state: ControlState,
  barrier: Barrier,
  params: { peerId: string; hostNames?: readonly string[]; now?: Date },
): Promise<CertifiedKey & { serialNumber: string }> {
  const issued = await issuePeerCertificate(clusterCaFrom(state, barrier), params);
  return { ...issued, serialNumber: new X509Certificate(issued.certificatePem).serialNumber.toUpperCase() };
}
