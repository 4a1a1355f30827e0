/**
 * What LockboxClient returns: plain objects with camelCase fields, Dates for
 * timestamps, enum names without their proto prefix, and absent optional
 * values left out, converted from the wire shapes of src/gen/.
 */
import type { AuditEvent__Output } from "../gen/lockbox/v1/AuditEvent.js";
import type { GetStatusResponse__Output } from "../gen/lockbox/v1/GetStatusResponse.js";
import type { Consumer__Output } from "../gen/lockbox/v1/Consumer.js";
import type { Grant__Output } from "../gen/lockbox/v1/Grant.js";
import type { KeyMetadata__Output } from "../gen/lockbox/v1/KeyMetadata.js";
import type { PurgeStatus__Output } from "../gen/lockbox/v1/PurgeStatus.js";
import type { Timestamp, Timestamp__Output } from "../gen/google/protobuf/Timestamp.js";

export interface KeyMetadata {
  id: string;
  project: string;
  scope: string;
  name: string;
  /** "SYMMETRIC", "OPAQUE" or "PASSPHRASE" */
  secretType: string;
  /** "AES", or "UNSPECIFIED" for an opaque or passphrase secret stored without one */
  algorithm: string;
  bitLength: number;
  createdAt?: Date;
  updatedAt?: Date;
  /** Absent: never expires. */
  expiresAt?: Date;
  /** "ACTIVE", "DEACTIVATED" or "DESTROYED" */
  state: string;
  /** The key this one was cloned or rekeyed from. */
  parentId?: string;
  destroyedAt?: Date;
}

export interface Consumer {
  service: string;
  resourceType: string;
  resourceId: string;
  createdAt?: Date;
}

export interface KeyConsumers {
  key: KeyMetadata;
  /** Sorted by service, resource type, resource id. */
  consumers: Consumer[];
  /** addConsumer: false if it was there already; removeConsumer: false if it was not there. */
  changed: boolean;
}

export interface FetchedKey {
  key: KeyMetadata;
  /** A copy owned by the caller; zero it when done. */
  material: Buffer;
}

export interface Grant {
  id: string;
  keyId: string;
  grantee: string;
  grantedBy: string;
  createdAt?: Date;
  expiresAt?: Date;
  revokedAt?: Date;
}

export interface PeerStatus {
  peerId: string;
  clusterId: string;
  version: string;
  sealState: string;
  /** "development-file" (NOT FOR PRODUCTION) or "tpm". */
  masterKeyProtector: string;
  masterKeyEpoch: number;
  startedAt?: Date;
  /** A decimal string: the wire type is uint64. */
  keyCount: string;
  partitionPower: number;
  /** The peer's raft node; absent from peers that do not report it. */
  raft?: RaftStatus;
  /** The peer's batched purge of destroyed material; absent from peers that do not report it. */
  purge?: PurgeStatus;
  /** The peer's standing under continuous attestation; absent from peers that do not report it. */
  attestation?: AttestationStatus;
}

export interface AttestationStatus {
  /** Its member state in its own control state ("" before it is a member). */
  memberState: string;
  /** The others refuse its calls as fenced: it must pass a re-quote again to return. */
  fenced: boolean;
  reason: string;
}

export interface RaftStatus {
  /** "leader", "follower", "candidate", "preCandidate", or "stopped". */
  role: string;
  /** Decimal strings: the wire types are uint64. */
  term: string;
  /** "" when no leader is known. */
  leader: string;
  commit: string;
  applied: string;
  snapshotIndex: string;
  voters: string[];
  learners: string[];
}

/** Counts and milliseconds are decimal strings: the wire types are uint64. */
export interface PurgeStatus {
  /** Destroyed values whose overwritten bytes still wait for a purge run. */
  pending: string;
  /** How long the oldest of them has waited ("0" when none). */
  oldestPendingMs: string;
  runs: string;
  purged: string;
  failedRuns: string;
  lastRunMs: string;
  /** When the last run ended; absent before the first. */
  lastRunAt?: Date;
  /** The longest a value waits before a run starts. */
  delayMs: string;
}

export interface AuditEvent {
  /** A decimal string: the wire type is uint64. */
  sequence: string;
  time?: Date;
  identity: string;
  operation: string;
  keyId?: string;
  project?: string;
  /** "OK", "DENIED", "NOT_FOUND", "INVALID" or "ERROR" */
  outcome: string;
  status: string;
  detail?: string;
  /** For an aggregate of refused calls: where they came from. */
  source?: string;
  /** Calls the event stands for, as a decimal string (uint64): "1", or an aggregate's count. */
  count: string;
}

export interface Page<T> {
  items: T[];
  /** Empty when there is nothing more. */
  nextPageToken: string;
}

export function toDate(ts: Timestamp__Output | null | undefined): Date | undefined {
  if (ts === null || ts === undefined) return undefined;
  return new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6));
}

export function fromDate(d: Date): Timestamp {
  const ms = d.getTime();
  if (!Number.isFinite(ms)) throw new RangeError("invalid date");
  const seconds = Math.floor(ms / 1000);
  return { seconds: String(seconds), nanos: (ms - seconds * 1000) * 1e6 };
}

const stripPrefix = (value: string, prefix: string): string =>
  value.startsWith(prefix) ? value.slice(prefix.length) : value;

/** Returns the object without the keys whose value is undefined (optional and absent). */
function compact<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) {
    if (o[k] === undefined) delete o[k];
  }
  return o;
}

const optional = (s: string): string | undefined => (s === "" ? undefined : s);

export function toKeyMetadata(m: KeyMetadata__Output | null | undefined): KeyMetadata {
  if (m === null || m === undefined) throw new TypeError("response carries no key metadata");
  return compact({
    id: m.id,
    project: m.project,
    scope: m.scope,
    name: m.name,
    secretType: stripPrefix(String(m.secret_type), "SECRET_TYPE_"),
    algorithm: stripPrefix(String(m.algorithm), "KEY_ALGORITHM_"),
    bitLength: m.bit_length,
    createdAt: toDate(m.created_at),
    updatedAt: toDate(m.updated_at),
    expiresAt: toDate(m.expires_at),
    state: stripPrefix(String(m.state), "KEY_STATE_"),
    parentId: optional(m.parent_id),
    destroyedAt: toDate(m.destroyed_at),
  });
}

export function toConsumer(c: Consumer__Output): Consumer {
  return compact({
    service: c.service,
    resourceType: c.resource_type,
    resourceId: c.resource_id,
    createdAt: toDate(c.created_at),
  });
}

export function toGrant(g: Grant__Output | null | undefined): Grant {
  if (g === null || g === undefined) throw new TypeError("response carries no grant");
  return compact({
    id: g.id,
    keyId: g.key_id,
    grantee: g.grantee,
    grantedBy: g.granted_by,
    createdAt: toDate(g.created_at),
    expiresAt: toDate(g.expires_at),
    revokedAt: toDate(g.revoked_at),
  });
}

export function toPeerStatus(s: GetStatusResponse__Output): PeerStatus {
  return compact({
    peerId: s.peer_id,
    clusterId: s.cluster_id,
    version: s.version,
    sealState: s.seal_state,
    masterKeyProtector: s.master_key_protector,
    masterKeyEpoch: s.master_key_epoch,
    startedAt: toDate(s.started_at),
    keyCount: String(s.key_count),
    partitionPower: s.partition_power,
    raft:
      s.raft === null
        ? undefined
        : {
            role: s.raft.role,
            term: String(s.raft.term),
            leader: s.raft.leader,
            commit: String(s.raft.commit),
            applied: String(s.raft.applied),
            snapshotIndex: String(s.raft.snapshot_index),
            voters: [...s.raft.voters],
            learners: [...s.raft.learners],
          },
    purge: s.purge === null ? undefined : toPurgeStatus(s.purge),
    attestation:
      s.attestation === null
        ? undefined
        : {
            memberState: s.attestation.member_state,
            fenced: s.attestation.fenced,
            reason: s.attestation.reason,
          },
  });
}

function toPurgeStatus(p: PurgeStatus__Output): PurgeStatus {
  return compact({
    pending: String(p.pending),
    oldestPendingMs: String(p.oldest_pending_ms),
    runs: String(p.runs),
    purged: String(p.purged),
    failedRuns: String(p.failed_runs),
    lastRunMs: String(p.last_run_ms),
    lastRunAt: toDate(p.last_run_at),
    delayMs: String(p.delay_ms),
  });
}

export function toAuditEvent(e: AuditEvent__Output): AuditEvent {
  return compact({
    sequence: String(e.sequence),
    time: toDate(e.time),
    identity: e.identity,
    operation: e.operation,
    keyId: optional(e.key_id),
    project: optional(e.project),
    outcome: stripPrefix(String(e.outcome), "AUDIT_OUTCOME_"),
    status: e.status,
    detail: optional(e.detail),
    source: optional(e.source),
    // Records from before aggregates existed carry no count: each stood for one call.
    count: String(e.count) === "0" ? "1" : String(e.count),
  });
}
