/**
 * The state machine of a control-node process: the key-value map of kv-state-machine.ts plus the address
 * book of the raft members. Addresses arrive in the context of AddLearner membership entries, so every
 * replica learns a new member's address at the same log index; they are part of the snapshot, so a node
 * restarted from a compacted log still knows where its peers are.
 */
import type { StateMachine } from "../../../cluster/raft/driver/state-machine.js";
import { ConfChangeType, type ConfChange, type NodeId } from "../../../cluster/raft/core/types.js";
import { isHostPort } from "../../../src/net/host-port.js";
import { KvStateMachine, type KvApplyResult } from "./kv-state-machine.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export class ControlStateMachine implements StateMachine<KvApplyResult> {
  readonly kv = new KvStateMachine();
  #addresses = new Map<NodeId, string>();

  /** `onAddress(id, address | null)` is called whenever a member's address is learned or forgotten. */
  constructor(private readonly onAddress: (id: NodeId, address: string | null) => void) {}

  get addresses(): ReadonlyMap<NodeId, string> {
    return this.#addresses;
  }

  apply(data: Uint8Array, index: number): KvApplyResult {
    return this.kv.apply(data, index);
  }

  /** Called by the driver's onConfChange hook for every committed membership entry, in log order. */
  recordConfChange(change: ConfChange): void {
    if (change.type === ConfChangeType.AddLearner) {
      let address: string;
      try {
        address = decoder.decode(change.context);
      } catch {
        return;
      }
      // Validated when proposed; a committed entry with a bad address is ignored the same way everywhere.
      if (!isHostPort(address)) return;
      this.#addresses.set(change.nodeId, address);
      this.onAddress(change.nodeId, address);
    } else if (change.type === ConfChangeType.RemoveNode) {
      this.#addresses.delete(change.nodeId);
      this.onAddress(change.nodeId, null);
    }
  }

  snapshot(): Uint8Array {
    const kv = decoder.decode(this.kv.snapshot());
    return encoder.encode(JSON.stringify({ kv, addresses: [...this.#addresses].sort() }));
  }

  restore(bytes: Uint8Array): void {
    // Everything is checked before anything changes: a refused image leaves the state as it was.
    const parsed = parseControlSnapshot(bytes);
    this.kv.restore(parsed.kv);
    for (const id of this.#addresses.keys()) this.onAddress(id, null);
    this.#addresses = new Map(parsed.addresses);
    for (const [id, address] of this.#addresses) this.onAddress(id, address);
  }

  checkSnapshot(bytes: Uint8Array, index: number): void {
    this.kv.checkSnapshot(parseControlSnapshot(bytes).kv, index);
  }
}

function parseControlSnapshot(bytes: Uint8Array): { kv: Uint8Array; addresses: [string, string][] } {
  let parsed: { kv?: unknown; addresses?: unknown } | null;
  try {
    parsed = JSON.parse(decoder.decode(bytes)) as typeof parsed;
  } catch {
    throw new ControlSnapshotInvalid("not UTF-8 JSON");
  }
  if (typeof parsed !== "object" || parsed === null || typeof parsed.kv !== "string") {
    throw new ControlSnapshotInvalid("no kv image");
  }
  const addresses = parsed.addresses;
  if (
    !Array.isArray(addresses) ||
    !addresses.every(
      (a) => Array.isArray(a) && a.length === 2 && typeof a[0] === "string" && typeof a[1] === "string",
    )
  ) {
    throw new ControlSnapshotInvalid("addresses are not [id, address] pairs");
  }
  const kv = encoder.encode(parsed.kv);
  new KvStateMachine().restore(kv); // throws KvCommandInvalid for a bad kv image
  return { kv, addresses: addresses as [string, string][] };
}

/** A control snapshot image that cannot be restored. */
export class ControlSnapshotInvalid extends Error {
  override readonly name = "ControlSnapshotInvalid";
  readonly code = "CONTROL_SNAPSHOT_INVALID";
  constructor(why: string) {
    super(`control snapshot: ${why}`);
  }
}

export const encodeAddress = (address: string): Uint8Array => encoder.encode(address);
