/**
 * The peer's control state machine until the control state exists (issue 9: members, ring, epochs,
 * KEKs, identities). It holds nothing: the peer proposes no commands yet, so a command entry can only
 * come from a peer running newer code, and it is answered with a refusal that changes nothing (a
 * committed entry must never stop a replica). Its snapshot image is empty, and it refuses to restore
 * any other image rather than drop state it does not understand.
 */
import type { StateMachine } from "../../cluster/raft/driver/state-machine.js";

export type EmptyControlStateResult = { ok: false; reason: string };

export class EmptyControlState implements StateMachine<EmptyControlStateResult> {
  apply(): EmptyControlStateResult {
    return { ok: false, reason: "this peer holds no control state yet" };
  }

  snapshot(): Uint8Array {
    return new Uint8Array(0);
  }

  restore(bytes: Uint8Array): void {
    this.checkSnapshot(bytes);
  }

  checkSnapshot(bytes: Uint8Array): void {
    if (bytes.byteLength !== 0) throw new ControlStateUnknown(bytes.byteLength);
  }
}

/** A snapshot image this peer's control state cannot hold. */
export class ControlStateUnknown extends Error {
  override readonly name = "ControlStateUnknown";
  readonly code = "CONTROL_STATE_UNKNOWN";
  constructor(bytes: number) {
    super(`control snapshot of ${bytes} bytes: this peer holds no control state yet`);
  }
}
