/**
 * lockbox.v1.AdminService at the edge: what this peer is (GetStatus) and its
 * audit log (ListAuditEvents). Every call needs the admin role.
 */
import type * as grpc from "@grpc/grpc-js";
import type { ServiceDefinition } from "@grpc/proto-loader";
import type { AuditEvent, AuditListRequest, AuditListResponse } from "../audit/audit-log.js";
import type { PurgeStatus } from "../store/purger.js";
import type { AuditEvent as WireAuditEvent } from "../gen/lockbox/v1/AuditEvent.js";
import type { GetStatusRequest__Output } from "../gen/lockbox/v1/GetStatusRequest.js";
import type { GetStatusResponse } from "../gen/lockbox/v1/GetStatusResponse.js";
import type { ListAuditEventsRequest__Output } from "../gen/lockbox/v1/ListAuditEventsRequest.js";
import type { ListAuditEventsResponse } from "../gen/lockbox/v1/ListAuditEventsResponse.js";
import type { ClusterAdmin } from "../controlplane/cluster-admin.js";
import { type EdgeContext, type Operation, auditedUnary } from "./audited-unary.js";
import { clusterAdminHandlers } from "./cluster-admin-handlers.js";
import { type MasterKeyAdminApi, masterKeyAdminHandlers } from "./master-key-admin-handlers.js";
import { stringFromWire, timestampToWire, uint32FromWire } from "./wire-mapping.js";

export interface PeerStatus {
  peerId: string;
  clusterId: string;
  version: string;
  sealState: "sealed" | "unsealed";
  /** "development-file" (NOT FOR PRODUCTION) or "tpm". */
  masterKeyProtector: string;
  masterKeyEpoch: number;
  startedAt: Date;
  keyCount: number;
  partitionPower: number;
  /** The peer's raft node (src/raft/peer-raft.ts PeerRaftStatus). */
  raft?: {
    role: string;
    term: number;
    leader: string;
    commit: number;
    applied: number;
    snapshotIndex: number;
    voters: string[];
    learners: string[];
  };
  /** The store's batched purge of destroyed material (src/store/purger.ts). */
  purge: PurgeStatus;
  /** Continuous attestation as this peer sees itself (src/peer/continuous-attestation.ts). */
  attestation?: { memberState: string; fenced: boolean; reason: string };
}

export interface AdminApi {
  status(): PeerStatus | Promise<PeerStatus>;
  listAuditEvents(req: AuditListRequest): Promise<AuditListResponse>;
  /** Peers, PCR policies and identities in the control state (cluster-admin-handlers.ts). */
  cluster?: ClusterAdmin;
  /** Master-key rotation and status (master-key-admin-handlers.ts). */
  masterKey?: MasterKeyAdminApi;
  /** The ring and this peer's replication (GetRingResponse, wire field names); absent: no ring. */
  ring?: () => Record<string, unknown>;
}

const OUTCOMES_TO_WIRE: Record<AuditEvent["outcome"], WireAuditEvent["outcome"]> = {
  ok: "AUDIT_OUTCOME_OK",
  denied: "AUDIT_OUTCOME_DENIED",
  not_found: "AUDIT_OUTCOME_NOT_FOUND",
  invalid: "AUDIT_OUTCOME_INVALID",
  error: "AUDIT_OUTCOME_ERROR",
};

/** `service` is AdminService's definition from the proto (each method's declared idempotency). */
export function adminServiceHandlers(
  admin: AdminApi,
  ctx: EdgeContext,
  service: ServiceDefinition,
): grpc.UntypedServiceImplementation {
  const getRing: Operation<object, object> = {
    name: "GetRing",
    adminOnly: true,
    requestFacts: () => ({}),
    async run() {
      return { response: admin.ring?.() ?? { version: 0 } };
    },
  };
  const getStatus: Operation<GetStatusRequest__Output, GetStatusResponse> = {
    name: "GetStatus",
    adminOnly: true,
    requestFacts: () => ({}),
    async run() {
      const s = await admin.status();
      return {
        response: {
          peer_id: s.peerId,
          cluster_id: s.clusterId,
          version: s.version,
          seal_state: s.sealState,
          master_key_protector: s.masterKeyProtector,
          master_key_epoch: s.masterKeyEpoch,
          started_at: timestampToWire(s.startedAt),
          key_count: String(s.keyCount),
          partition_power: s.partitionPower,
          raft:
            s.raft === undefined
              ? null
              : {
                  role: s.raft.role,
                  term: String(s.raft.term),
                  leader: s.raft.leader,
                  commit: String(s.raft.commit),
                  applied: String(s.raft.applied),
                  snapshot_index: String(s.raft.snapshotIndex),
                  voters: s.raft.voters,
                  learners: s.raft.learners,
                },
          purge: {
            pending: String(s.purge.pending),
            oldest_pending_ms: String(Math.round(s.purge.oldestPendingMs)),
            runs: String(s.purge.runs),
            purged: String(s.purge.purgedKeys),
            failed_runs: String(s.purge.failedRuns),
            last_run_ms: String(Math.round(s.purge.lastRunMs)),
            last_run_at:
              s.purge.lastRunEndedAt === undefined ? null : timestampToWire(new Date(s.purge.lastRunEndedAt)),
            delay_ms: String(s.purge.delayMs),
          },
          attestation:
            s.attestation === undefined
              ? null
              : {
                  member_state: s.attestation.memberState,
                  fenced: s.attestation.fenced,
                  reason: s.attestation.reason,
                },
        },
      };
    },
  };

  const listAuditEvents: Operation<ListAuditEventsRequest__Output, ListAuditEventsResponse> = {
    name: "ListAuditEvents",
    adminOnly: true,
    requestFacts: (req) => ({ keyId: req.key_id }),
    async run(_caller, req) {
      const page = await admin.listAuditEvents({
        keyId: stringFromWire("key_id", req.key_id),
        identity: stringFromWire("identity", req.identity),
        pageSize: uint32FromWire("page_size", req.page_size),
        pageToken: stringFromWire("page_token", req.page_token),
      });
      return {
        response: {
          events: page.events.map((e): WireAuditEvent => ({
            sequence: String(e.sequence),
            time: timestampToWire(e.time),
            identity: e.identity,
            operation: e.operation,
            key_id: e.keyId,
            project: e.project,
            outcome: OUTCOMES_TO_WIRE[e.outcome],
            status: e.status,
            detail: e.detail,
            source: e.source,
            count: String(e.count),
          })),
          next_page_token: page.nextPageToken,
        },
      };
    },
  };

  return {
    ...clusterAdminHandlers(admin.cluster, ctx, service),
    ...masterKeyAdminHandlers(admin.masterKey, ctx, service),
    GetStatus: auditedUnary(getStatus, ctx, service.GetStatus),
    GetRing: auditedUnary(getRing, ctx, service.GetRing),
    ListAuditEvents: auditedUnary(listAuditEvents, ctx, service.ListAuditEvents),
  } as grpc.UntypedServiceImplementation;
}
