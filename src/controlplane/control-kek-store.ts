/**
 * Project KEKs in the control state (DESIGN.md §2): the key service's KekStore backed by the raft log,
 * so a project has one KEK on every peer and a KEK created through one peer unwraps keys on another.
 * Only the wrapped KEK (a barrier envelope, whose header names its CMK epoch) enters the log.
 *
 * A store written before the control state held KEKs keeps them in its "meta" sublevel; the first read
 * of such a project moves its KEK into the control state (first writer wins there, as for a new one).
 */
import { envelopeEpoch } from "../crypto/envelope.js";
import { LockboxError } from "../errors.js";
import type { KekStore } from "../keys/project-keks.js";
import type { ControlPlane } from "./control-plane.js";
import { refusalError } from "./control-plane.js";

const EPOCH_WAIT_MS_MAX = 5_000;
const EPOCH_POLL_MS = 50;

export function controlKekStore(
  control: ControlPlane,
  legacy?: (project: string) => Promise<Uint8Array | undefined>,
): KekStore {
  const held = (project: string): Uint8Array | undefined => {
    const k = control.state.projectKek(project);
    return k === undefined ? undefined : new Uint8Array(Buffer.from(k.wrapped, "base64"));
  };
  const store: KekStore = {
    async get(project) {
      const local = held(project);
      if (local !== undefined) return local;
      // Another peer may have created it a moment ago: look again once every committed entry applied here.
      await control.readCurrent();
      const current = held(project);
      if (current !== undefined) return current;
      const old = await legacy?.(project);
      return old === undefined ? undefined : store.createIfAbsent(project, old);
    },
    async createIfAbsent(project, wrapped) {
      const epoch = envelopeEpoch(wrapped);
      // A cluster founded a moment ago records its CMK epoch in the leader's first duty round: wait for it.
      const deadline = Date.now() + EPOCH_WAIT_MS_MAX;
      while (!control.state.cmkEpochs().some((e) => e.epoch === epoch) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, EPOCH_POLL_MS));
      }
      const { result } = await control.propose({
        type: "kek.create",
        project,
        epoch,
        wrapped: Buffer.from(wrapped).toString("base64"),
      });
      if (!result.ok) {
        if (result.code === "failed-precondition") {
          throw new LockboxError("UNAVAILABLE", `project KEKs cannot be stored yet: ${result.reason}; retry`);
        }
        throw refusalError(result.code, result.reason);
      }
      const value = result.value as { wrapped?: unknown } | undefined;
      if (typeof value?.wrapped !== "string")
        throw new LockboxError("INTERNAL", "kek.create answered no KEK");
      return new Uint8Array(Buffer.from(value.wrapped, "base64"));
    },
  };
  return store;
}
