/**
 * The control plane's API for the rest of the peer (src/attestation, the TPM-sealed CMK, the data plane):
 *
 * - ControlState: the replicated state's reads (members, policies, ring, CMK epochs, project KEKs,
 *   identities, revocations, cluster CA); onChange() to mirror changes.
 * - ControlPlane: propose(command) from any peer (forwarded to the leader), proposeOrThrow(),
 *   readCurrent() (ReadIndex), admitPeer() / clientRefusal().
 * - ControlCommand: every change, as a typed value (control-command.ts).
 * - checkJoinToken(): a presented join token against an enrolled member.
 * - clusterCaFrom() / wrapCaKey() / issuePeerCertificateFromState(): the cluster CA, its key unwrapped
 *   for one signing (a joiner's peer certificate).
 */
export {
  ControlState,
  type ControlResult,
  type ControlChange,
  type ControlRefusalCode,
} from "./control-state.js";
export { ControlPlane, refusalError, type Proposed } from "./control-plane.js";
export {
  encodeCommand,
  decodeCommand,
  type ControlCommand,
  type ControlCommandType,
} from "./control-command.js";
export * from "./control-records.js";
export { checkJoinToken, joinTokenSha256, newJoinToken, type JoinTokenCheck } from "./join-token.js";
export { clusterCaFrom, wrapCaKey, issuePeerCertificateFromState, CA_KEY_BINDING } from "./cluster-ca-key.js";
export { ClusterAdmin, caFingerprintSha256, type PeerView } from "./cluster-admin.js";
