/**
 * The records the control state holds (DESIGN.md §3), as plain JSON-able values, and their validators.
 * The same validators read a record from a command and from a snapshot image, so a snapshot can never
 * hold what a command could not have put there. Only ciphertext is ever held: project KEKs and the
 * CA's private key are wrapped under a CMK epoch; CMK epochs are numbers and states, never key bytes.
 */
import { isNodeId } from "../../cluster/node-id.js";
import { parseQuotePolicy, type QuotePolicy } from "../../tpm/verify/quote-policy.js";
import { isValidIdentityName, isValidProjectName } from "../pki/identity-names.js";
import { isHostPort } from "../net/host-port.js";
import {
  BASE64,
  ControlShapeInvalid,
  PRINTABLE,
  SERIAL_HEX,
  SHA256_HEX,
  array,
  base64,
  bool,
  exactKeys,
  int,
  object,
  oneOf,
  str,
  type Obj,
} from "./strict-fields.js";

/** Bounds on everything the control state holds: its memory and its snapshot stay bounded. */
export const CONTROL_LIMITS = {
  members: 1024,
  policies: 256,
  identities: 100_000,
  serialsPerIdentity: 64,
  revokedCertificates: 1_000_000,
  projectKeks: 1_000_000,
  cmkEpochs: 64,
  zoneChars: 64,
  reasonChars: 256,
  ekCertificateBytes: 4096,
  ekPublicKeyBytes: 1024,
  policyJsonBytes: 8192,
  wrappedBytes: 1024,
  caCertificateChars: 8192,
  /**
   * The committed ring's bytes (raw, before base64): room for partition power 16 with up to 15
   * replicas and more than 255 peers (ring-codec.ts format 2), held in memory and in snapshots.
   */
  ringBytes: 4 * 1024 * 1024,
  /**
   * One command's share of a ring (raw bytes, a multiple of 3 so the parts' base64 concatenates):
   * ring.put carries a ring this small whole; a larger one goes in ring.part commands, each well
   * inside COMMAND_BYTES_MAX.
   */
  ringPartBytes: 9 * 1024,
  /** Parts of one ring: ringBytes / ringPartBytes, rounded down (an assembled ring fits ringBytes). */
  ringParts: 455,
  weightMax: 1_000_000,
  projectsPerIdentity: 256,
  akPublicBytes: 1024,
} as const;

/** Milliseconds since the epoch, as proposed (apply never reads a clock: replicas must agree). */
const TIME_MAX = 8_640_000_000_000_000;
const POLICY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** "down": did not answer a re-quote (unreachable, not untrusted: DESIGN.md §5); set and cleared by attestation. */
export const MEMBER_STATES = [
  "enrolled",
  "joining",
  "active",
  "down",
  "fenced",
  "leaving",
  "removed",
] as const;
export type MemberState = (typeof MEMBER_STATES)[number];

/** A peer of the cluster, from enrollment on. A removed member stays as a tombstone: its id is never reused. */
export interface MemberRecord {
  readonly id: string;
  /** HOST:PORT the peer serves on (its gRPC port: keys, admin and peer services). */
  readonly address: string;
  readonly zone: string;
  readonly weight: number;
  readonly state: MemberState;
  /** Name of the PCR policy (QuotePolicy) its quotes are checked against; "" for an unattested member. */
  readonly policy: string;
  /**
   * Base64 DER SubjectPublicKeyInfo of its EK, or "" when enrolled by certificate only. Both EK fields
   * are "" only for a member added without attestation (member.add-unattested: the founding peer until
   * `init` seals to a TPM, and tests).
   */
  readonly ekPublicKey: string;
  /** Base64 DER of its EK certificate, or "" when enrolled by public key only. */
  readonly ekCertificate: string;
  /** Serial (upper-case hex) of the peer certificate it was issued when it joined; "" before. */
  readonly certificateSerial: string;
  /** SHA-256 (hex) of the one-time join token `peer enroll` printed; "" once used or never set. */
  readonly joinTokenSha256: string;
  readonly joinTokenExpiresAtMs: number;
  readonly enrolledAtMs: number;
  readonly stateChangedAtMs: number;
  /** Why the last state change happened (fenced, removed, ...); "" if nothing to say. */
  readonly reason: string;
  /** Base64 of the AK (TPMT_PUBLIC, marshalled) activated at its last admission; "" before. */
  readonly akPublic: string;
  /** The TPM clock of its last accepted quote: a quote at or before it is a replay. */
  readonly lastQuoteClock: QuoteClockRecord | null;
}

/** tpm/verify/quote-failure.ts QuoteClock, with the 64-bit clock as a decimal string (JSON has no bigint). */
export interface QuoteClockRecord {
  readonly clock: string;
  readonly resetCount: number;
  readonly restartCount: number;
}

export function readQuoteClock(value: unknown, field: string): QuoteClockRecord {
  const o = object(value, field);
  exactKeys(o, field, ["clock", "resetCount", "restartCount"]);
  const clock = str(o, "clock", field, 20, /^(0|[1-9][0-9]{0,19})$/);
  if (BigInt(clock) > 0xffff_ffff_ffff_ffffn)
    throw new ControlShapeInvalid(`${field}.clock`, "exceeds 64 bits");
  return {
    clock,
    resetCount: int(o, "resetCount", field, 0, 0xffff_ffff),
    restartCount: int(o, "restartCount", field, 0, 0xffff_ffff),
  };
}

export interface PolicyRecord {
  readonly name: string;
  /** tpm/verify/quote-policy.ts QuotePolicy, checked by parseQuotePolicy before it is stored. */
  readonly policy: QuotePolicy;
  readonly updatedAtMs: number;
}

/**
 * A CMK epoch's life (DESIGN.md §5 "Rotation"): staged (made by a rotation, being delivered to the
 * members by attestation), active (new wraps use it), retiring (a newer one is active; KEKs are being
 * re-wrapped away from it), retired (nothing refers to it; members forget it).
 */
export const CMK_EPOCH_STATES = ["staged", "active", "retiring", "retired"] as const;
export type CmkEpochState = (typeof CMK_EPOCH_STATES)[number];

/** A CMK epoch: its number, state and holders. The key itself never enters the control state. */
export interface CmkEpochRecord {
  readonly epoch: number;
  readonly state: CmkEpochState;
  readonly createdAtMs: number;
  /**
   * Members that reported holding this epoch sealed to their TPM (cmk.epoch-held), sorted. Tracked for
   * epochs a rotation staged: activation waits for every active member, retirement of the epoch before
   * for every member that may serve again. Empty for the founding epoch (every member got it by joining).
   */
  readonly holders: readonly string[];
}

/** A project's KEK, wrapped under CMK epoch `epoch` (src/keys/project-keks.ts kekBinding). */
export interface ProjectKekRecord {
  readonly project: string;
  readonly epoch: number;
  /** Base64 of the barrier envelope. */
  readonly wrapped: string;
}

export const ROLES = ["admin", "service"] as const;

export interface IssuedSerial {
  readonly serial: string;
  readonly notAfterMs: number;
}

/** A client identity: its role and projects, and the certificates issued to it. */
export interface IdentityRecord {
  readonly name: string;
  readonly role: (typeof ROLES)[number];
  readonly projects: readonly string[];
  readonly serials: readonly IssuedSerial[];
  readonly revoked: boolean;
  readonly createdAtMs: number;
}

/** One entry of the CA's revocation list. */
export interface RevokedCertificate {
  readonly serial: string;
  /** The identity or member the certificate was issued to, for listing. */
  readonly subject: string;
  readonly reason: string;
  readonly revokedAtMs: number;
}

/** The cluster CA: its certificate, and its private key wrapped under a CMK epoch (never in the clear). */
export interface ClusterCaRecord {
  readonly certificatePem: string;
  /** Base64 of the barrier envelope of the PKCS#8 PEM (binding caKeyBinding()). */
  readonly wrappedKey: string;
  readonly epoch: number;
}

/** The ring, as cluster/ring/ring-codec.ts bytes (base64), with its version. */
export interface RingRecord {
  readonly version: number;
  readonly bytes: string;
}

// ---- validators (record shape and bounds; cross-record rules live in control-state.ts) -------------

export function readMember(value: unknown, field: string): MemberRecord {
  const o = object(value, field);
  exactKeys(o, field, MEMBER_KEYS);
  const m: MemberRecord = {
    id: nodeId(o, "id", field),
    address: hostPort(o, "address", field),
    zone: str(o, "zone", field, CONTROL_LIMITS.zoneChars, /^[A-Za-z0-9][A-Za-z0-9._-]*$/),
    weight: int(o, "weight", field, 1, CONTROL_LIMITS.weightMax),
    state: oneOf(o, "state", field, MEMBER_STATES),
    policy: str(o, "policy", field, 64, /^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,63})?$/),
    ekPublicKey: base64(o, "ekPublicKey", field, CONTROL_LIMITS.ekPublicKeyBytes),
    ekCertificate: base64(o, "ekCertificate", field, CONTROL_LIMITS.ekCertificateBytes),
    certificateSerial: optionalSerial(o, "certificateSerial", field),
    joinTokenSha256: str(o, "joinTokenSha256", field, 64, /^(?:[0-9a-f]{64})?$/),
    joinTokenExpiresAtMs: int(o, "joinTokenExpiresAtMs", field, 0, TIME_MAX),
    enrolledAtMs: int(o, "enrolledAtMs", field, 0, TIME_MAX),
    stateChangedAtMs: int(o, "stateChangedAtMs", field, 0, TIME_MAX),
    reason: reason(o, "reason", field),
    akPublic: base64(o, "akPublic", field, CONTROL_LIMITS.akPublicBytes),
    lastQuoteClock:
      o.lastQuoteClock === null ? null : readQuoteClock(o.lastQuoteClock, `${field}.lastQuoteClock`),
  };
  return m;
}
const MEMBER_KEYS = [
  "id",
  "address",
  "zone",
  "weight",
  "state",
  "policy",
  "ekPublicKey",
  "ekCertificate",
  "certificateSerial",
  "joinTokenSha256",
  "joinTokenExpiresAtMs",
  "enrolledAtMs",
  "stateChangedAtMs",
  "reason",
  "akPublic",
  "lastQuoteClock",
] as const;

export function readPolicy(value: unknown, field: string): PolicyRecord {
  const o = object(value, field);
  exactKeys(o, field, ["name", "policy", "updatedAtMs"]);
  const name = policyName(o, "name", field);
  const policy = quotePolicy(o.policy, `${field}.policy`);
  return { name, policy, updatedAtMs: int(o, "updatedAtMs", field, 0, TIME_MAX) };
}

export function quotePolicy(value: unknown, field: string): QuotePolicy {
  let text: string;
  try {
    text = JSON.stringify(value) ?? "";
  } catch {
    throw new ControlShapeInvalid(field, "is not JSON");
  }
  if (text.length > CONTROL_LIMITS.policyJsonBytes) {
    throw new ControlShapeInvalid(field, `longer than ${CONTROL_LIMITS.policyJsonBytes} bytes`);
  }
  const parsed = parseQuotePolicy(value);
  if ("code" in parsed) throw new ControlShapeInvalid(`${field}.${parsed.field}`, parsed.problem);
  return value as QuotePolicy;
}

export function readCmkEpoch(value: unknown, field: string): CmkEpochRecord {
  const o = object(value, field);
  exactKeys(o, field, ["epoch", "state", "createdAtMs", "holders"]);
  // Snapshots written before rotations existed have no holders.
  const holders = o.holders === undefined ? [] : array(o, "holders", field, CONTROL_LIMITS.members);
  const ids = holders.map((h, i) => nodeId({ h }, "h", `${field}.holders[${i}]`));
  if (new Set(ids).size !== ids.length)
    throw new ControlShapeInvalid(`${field}.holders`, "names a member twice");
  return {
    epoch: epoch(o, "epoch", field),
    state: oneOf(o, "state", field, CMK_EPOCH_STATES),
    createdAtMs: int(o, "createdAtMs", field, 0, TIME_MAX),
    holders: [...ids].sort(),
  };
}

export function readProjectKek(value: unknown, field: string): ProjectKekRecord {
  const o = object(value, field);
  exactKeys(o, field, ["project", "epoch", "wrapped"]);
  return {
    project: projectName(o, "project", field),
    epoch: epoch(o, "epoch", field),
    wrapped: wrapped(o, "wrapped", field),
  };
}

export function readIdentity(value: unknown, field: string): IdentityRecord {
  const o = object(value, field);
  exactKeys(o, field, ["name", "role", "projects", "serials", "revoked", "createdAtMs"]);
  const projects = array(o, "projects", field, CONTROL_LIMITS.projectsPerIdentity).map((p, i) => {
    if (typeof p !== "string" || !isValidProjectName(p)) {
      throw new ControlShapeInvalid(`${field}.projects[${i}]`, "is not a project name");
    }
    return p;
  });
  if (new Set(projects).size !== projects.length) {
    throw new ControlShapeInvalid(`${field}.projects`, "names a project twice");
  }
  const serials = array(o, "serials", field, CONTROL_LIMITS.serialsPerIdentity).map((s, i) =>
    readIssuedSerial(s, `${field}.serials[${i}]`),
  );
  return {
    name: identityName(o, "name", field),
    role: oneOf(o, "role", field, ROLES),
    projects,
    serials,
    revoked: bool(o, "revoked", field),
    createdAtMs: int(o, "createdAtMs", field, 0, TIME_MAX),
  };
}

export function readIssuedSerial(value: unknown, field: string): IssuedSerial {
  const o = object(value, field);
  exactKeys(o, field, ["serial", "notAfterMs"]);
  return { serial: serial(o, "serial", field), notAfterMs: int(o, "notAfterMs", field, 0, TIME_MAX) };
}

export function readRevoked(value: unknown, field: string): RevokedCertificate {
  const o = object(value, field);
  exactKeys(o, field, ["serial", "subject", "reason", "revokedAtMs"]);
  return {
    serial: serial(o, "serial", field),
    subject: str(o, "subject", field, 128, PRINTABLE),
    reason: reason(o, "reason", field),
    revokedAtMs: int(o, "revokedAtMs", field, 0, TIME_MAX),
  };
}

export function readClusterCa(value: unknown, field: string): ClusterCaRecord {
  const o = object(value, field);
  exactKeys(o, field, ["certificatePem", "wrappedKey", "epoch"]);
  return {
    certificatePem: str(
      o,
      "certificatePem",
      field,
      CONTROL_LIMITS.caCertificateChars,
      /^-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\r?\n?$/,
    ),
    wrappedKey: wrapped(o, "wrappedKey", field),
    epoch: epoch(o, "epoch", field),
  };
}

/** A ring record: in a ring.put command `bytesMax` is one part's (ringPartBytes), in a snapshot the whole ring's. */
export function readRing(
  value: unknown,
  field: string,
  bytesMax: number = CONTROL_LIMITS.ringBytes,
): RingRecord {
  const o = object(value, field);
  exactKeys(o, field, ["version", "bytes"]);
  return {
    version: int(o, "version", field, 1, Number.MAX_SAFE_INTEGER),
    bytes: base64(o, "bytes", field, bytesMax),
  };
}

/**
 * A ring upload in progress (ring.part commands, in order from index 0): the base64 parts received so
 * far of ring `version`, which is committed when part `count - 1` arrives.
 */
export interface RingUploadRecord {
  readonly version: number;
  readonly count: number;
  readonly parts: readonly string[];
}

export function readRingUpload(value: unknown, field: string): RingUploadRecord {
  const o = object(value, field);
  exactKeys(o, field, ["version", "count", "parts"]);
  const count = int(o, "count", field, 2, CONTROL_LIMITS.ringParts);
  const parts = array(o, "parts", field, count - 1).map((v, i) => {
    const part = `${field}.parts[${i}]`;
    // Parts held are never the last (it completes the upload): each is a whole, unpadded part.
    if (
      typeof v !== "string" ||
      v.length !== (CONTROL_LIMITS.ringPartBytes / 3) * 4 ||
      !/^[A-Za-z0-9+/]*$/.test(v)
    )
      throw new ControlShapeInvalid(part, "is not a whole base64 part of a ring");
    return v;
  });
  if (parts.length === 0) throw new ControlShapeInvalid(`${field}.parts`, "is empty");
  return { version: int(o, "version", field, 1, Number.MAX_SAFE_INTEGER), count, parts };
}

// ---- field helpers -----------------------------------------------------------------------------------

export function nodeId(o: Obj, key: string, field: string): string {
  const v = o[key];
  if (!isNodeId(v)) throw new ControlShapeInvalid(`${field}.${key}`, "is not a peer id");
  return v;
}

export function hostPort(o: Obj, key: string, field: string): string {
  const v = str(o, key, field, 300);
  if (!isHostPort(v)) throw new ControlShapeInvalid(`${field}.${key}`, "is not HOST:PORT");
  return v;
}

export function policyName(o: Obj, key: string, field: string): string {
  return str(o, key, field, 64, POLICY_NAME);
}

export function identityName(o: Obj, key: string, field: string): string {
  const v = str(o, key, field, 128);
  if (!isValidIdentityName(v)) throw new ControlShapeInvalid(`${field}.${key}`, "is not an identity name");
  return v;
}

export function projectName(o: Obj, key: string, field: string): string {
  const v = str(o, key, field, 128);
  if (!isValidProjectName(v)) throw new ControlShapeInvalid(`${field}.${key}`, "is not a project name");
  return v;
}

export function serial(o: Obj, key: string, field: string): string {
  return str(o, key, field, 64, SERIAL_HEX);
}

function optionalSerial(o: Obj, key: string, field: string): string {
  return str(o, key, field, 64, /^(?:[0-9A-F]{1,64})?$/);
}

export function epoch(o: Obj, key: string, field: string): number {
  return int(o, key, field, 1, 0xffff_ffff);
}

export function wrapped(o: Obj, key: string, field: string): string {
  const v = base64(o, key, field, CONTROL_LIMITS.wrappedBytes);
  if (v.length === 0) throw new ControlShapeInvalid(`${field}.${key}`, "is empty");
  return v;
}

export function reason(o: Obj, key: string, field: string): string {
  return str(o, key, field, CONTROL_LIMITS.reasonChars, PRINTABLE);
}

export function time(o: Obj, key: string, field: string): number {
  return int(o, key, field, 0, TIME_MAX);
}

export { BASE64, SHA256_HEX };
