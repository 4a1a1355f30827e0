/**
 * AdminService's master-key calls at the edge (admin.proto RotateMasterKey, GetMasterKeyStatus): wire
 * fields in, src/controlplane/master-key-rotation.ts, wire fields out. Admin role only, audited like
 * every call; the recovery shares a rotation may return are in the response only, never in the audit.
 */
import type * as grpc from "@grpc/grpc-js";
import type { ServiceDefinition } from "@grpc/proto-loader";
import type { Barrier } from "../crypto/barrier.js";
import { LockboxError } from "../errors.js";
import type { MasterKeyRotation } from "../controlplane/master-key-rotation.js";
import { type EdgeContext, type Operation, auditedUnary } from "./audited-unary.js";
import { timestampToWire, uint32FromWire } from "./wire-mapping.js";

type Wire = Record<string, unknown>;

export const MASTER_KEY_ADMIN_METHODS = ["RotateMasterKey", "GetMasterKeyStatus"] as const;

export interface MasterKeyAdminApi {
  rotation: MasterKeyRotation;
  barrier: Barrier;
  peerId: string;
}

/** `api` undefined: both calls are refused FAILED_PRECONDITION (a peer built without a control plane). */
export function masterKeyAdminHandlers(
  api: MasterKeyAdminApi | undefined,
  ctx: EdgeContext,
  service: ServiceDefinition,
): grpc.UntypedServiceImplementation {
  const need = (): MasterKeyAdminApi => {
    if (api === undefined) throw new LockboxError("FAILED_PRECONDITION", "this peer has no control plane");
    return api;
  };
  const op = (name: string, run: (req: Wire) => Promise<object>): Operation<Wire, object> => ({
    name,
    adminOnly: true,
    requestFacts: () => ({}),
    async run(_caller, req) {
      return { response: await run(req) };
    },
  });
  const ops: Record<(typeof MASTER_KEY_ADMIN_METHODS)[number], Operation<Wire, object>> = {
    RotateMasterKey: op("RotateMasterKey", async (req) => {
      const r = await need().rotation.rotate({
        shares: uint32FromWire("recovery_shares", req.recovery_shares),
        threshold: uint32FromWire("recovery_threshold", req.recovery_threshold),
      });
      return { epoch: r.epoch, resumed: r.resumed, recovery_shares: r.recoveryShares };
    }),
    GetMasterKeyStatus: op("GetMasterKeyStatus", async () => {
      const a = need();
      const epochs = await a.rotation.epochs();
      const p = a.rotation.progress();
      return {
        epochs: epochs.map((e) => ({
          epoch: e.epoch,
          state: e.state,
          created_at: timestampToWire(new Date(e.createdAtMs)),
          holders: [...e.holders],
          lacking: [...e.lacking],
          project_keks: e.projectKeks,
          cluster_ca: e.clusterCa,
        })),
        rotation: {
          running: p.running,
          epoch: p.epoch,
          phase: p.phase,
          keks_rewrapped: p.keksRewrapped,
          keks_total: p.keksTotal,
          detail: p.detail,
        },
        peer_id: a.peerId,
        peer_active_epoch: a.barrier.sealed ? 0 : a.barrier.activeEpoch,
        peer_held_epochs: a.barrier.sealed ? [] : a.barrier.heldEpochs,
      };
    }),
  };
  return Object.fromEntries(
    MASTER_KEY_ADMIN_METHODS.map((m) => [m, auditedUnary(ops[m], ctx, service[m]!)]),
  ) as grpc.UntypedServiceImplementation;
}
