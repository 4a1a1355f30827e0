/**
 * The commands of the control state's raft log and their codec. An entry is `[version u8][JSON]`:
 * bounded in bytes, versioned (a peer refuses a version it does not know rather than guess), and
 * strict (every field checked for type and bound, no unknown field, no unknown type). decodeCommand
 * never throws: a committed entry that does not decode is answered with a refusal value.
 */
import type { QuotePolicy } from "../../tpm/verify/quote-policy.js";
import {
  CMK_EPOCH_STATES,
  MEMBER_STATES,
  ROLES,
  epoch,
  hostPort,
  identityName,
  nodeId,
  policyName,
  projectName,
  quotePolicy,
  readClusterCa,
  readQuoteClock,
  readIssuedSerial,
  readRing,
  reason,
  serial,
  time,
  wrapped,
  CONTROL_LIMITS,
  type ClusterCaRecord,
  type CmkEpochState,
  type IssuedSerial,
  type MemberState,
  type QuoteClockRecord,
  type RingRecord,
} from "./control-records.js";
import {
  ControlShapeInvalid,
  array,
  base64,
  exactKeys,
  int,
  object,
  oneOf,
  str,
  type Obj,
} from "./strict-fields.js";
import { isValidProjectName } from "../pki/identity-names.js";

export const COMMAND_CODEC_VERSION = 1;
/** Largest encoded command; it also fits the raft driver's proposal bound (src/raft/peer-raft.ts). */
export const COMMAND_BYTES_MAX = 16 * 1024;

export type ControlCommand =
  | {
      type: "member.enroll";
      id: string;
      address: string;
      zone: string;
      weight: number;
      policy: string;
      ekPublicKey: string;
      ekCertificate: string;
      /** "" only with `founder`: the founder has no token to spend; every other enrollment has one. */
      joinTokenSha256: string;
      joinTokenExpiresAtMs: number;
      atMs: number;
      /** The founding peer's own enrollment (founding-duties.ts), the one enrollment without a join token. */
      founder?: true;
    }
  /**
   * Moves a member from state `from` to `to` (compare-and-set: a stale proposer changes nothing).
   * `certificateSerial` may name a new certificate only when a fenced member becomes active; "" otherwise.
   * joining -> enrolled undoes an admission that was never confirmed (its certificate is revoked); it
   * names that admission's certificate serial and is refused (conflict) if the member holds another.
   */
  | {
      type: "member.transition";
      id: string;
      from: MemberState;
      to: MemberState;
      reason: string;
      certificateSerial: string;
      atMs: number;
    }
  /**
   * NOT ATTESTED: adds an active member with no TPM identity. Proposed by the founding peer for itself
   * (until `init` seals the CMK to a TPM) and, behind the config flag `allowUnattestedMembersForTests`
   * (off by default), by an admin in tests before the attested join exists.
   */
  | {
      type: "member.add-unattested";
      id: string;
      address: string;
      zone: string;
      weight: number;
      certificateSerial: string;
      atMs: number;
    }
  /** The attested join's first commit (control-state.ts #admit): joining; `from` is the state the verifier saw. */
  | {
      type: "member.admit";
      id: string;
      from: MemberState;
      certificateSerial: string;
      akPublic: string;
      quoteClock: QuoteClockRecord;
      atMs: number;
    }
  /** The joiner of the admission that issued `certificateSerial` holds the CMK: joining -> active. */
  | { type: "member.confirm"; id: string; certificateSerial: string; atMs: number }
  /** A passed re-quote: the clock moves on; a down member is active again (a fenced one is not). */
  | { type: "member.attested"; id: string; quoteClock: QuoteClockRecord; atMs: number }
  /**
   * Re-enrolment of a member onto a new TPM after `lockbox recover` (src/attestation/reenrolment.ts):
   * its EK, its AK (bound to that EK by credential activation) and the clock of a quote that met its
   * policy replace the old TPM's. Its state and certificate do not change: re-quotes against the new AK
   * decide whether it is trusted.
   */
  | {
      type: "member.reenroll";
      id: string;
      ekPublicKey: string;
      ekCertificate: string;
      akPublic: string;
      quoteClock: QuoteClockRecord;
      reason: string;
      atMs: number;
    }
  | { type: "member.address"; id: string; address: string }
  | { type: "policy.put"; name: string; policy: QuotePolicy; atMs: number }
  | { type: "policy.remove"; name: string }
  | { type: "ring.put"; ring: RingRecord }
  /**
   * One part of a ring too large for ring.put (control-state.ts): parts 0..count-1 of one version, in
   * order, each the base64 of at most CONTROL_LIMITS.ringPartBytes; the last one commits the ring.
   */
  | { type: "ring.part"; version: number; index: number; count: number; bytes: string }
  | { type: "cmk.epoch-add"; epoch: number; atMs: number }
  | { type: "cmk.epoch-state"; epoch: number; state: CmkEpochState }
  /**
   * A rotation's next epoch (control-state.ts): staged, held so far by `holder`, the member that made
   * it. Only its number enters the log; members fetch the key by attestation (cmk-epoch-keeper.ts).
   */
  | { type: "cmk.epoch-stage"; epoch: number; holder: string; atMs: number }
  /** `member` holds `epoch` sealed to its TPM. */
  | { type: "cmk.epoch-held"; epoch: number; member: string }
  /** A staged epoch becomes active once every active member holds it; the active one starts retiring. */
  | { type: "cmk.epoch-activate"; epoch: number }
  /** Stores a project's KEK unless it has one: the result names the KEK that holds (first writer wins). */
  | { type: "kek.create"; project: string; epoch: number; wrapped: string }
  | { type: "kek.rewrap"; project: string; fromEpoch: number; epoch: number; wrapped: string }
  | { type: "kek.delete"; project: string }
  | { type: "ca.set"; ca: ClusterCaRecord }
  | {
      type: "identity.issue";
      name: string;
      role: (typeof ROLES)[number];
      projects: string[];
      issued: IssuedSerial;
      atMs: number;
    }
  | { type: "identity.revoke"; name: string; reason: string; atMs: number }
  | { type: "certificate.revoke"; serial: string; subject: string; reason: string; atMs: number };

export type ControlCommandType = ControlCommand["type"];

export class CommandInvalid extends Error {
  override readonly name = "CommandInvalid";
  readonly code = "CONTROL_COMMAND_INVALID";
}

export function encodeCommand(command: ControlCommand): Uint8Array {
  // Re-read before encoding: a proposer can never put into the log what a replica would refuse to decode.
  decodeCommandBody(JSON.parse(JSON.stringify(command)) as unknown);
  const json = new TextEncoder().encode(JSON.stringify(command));
  const out = new Uint8Array(1 + json.byteLength);
  out[0] = COMMAND_CODEC_VERSION;
  out.set(json, 1);
  if (out.byteLength > COMMAND_BYTES_MAX) {
    throw new CommandInvalid(
      `command ${command.type} is ${out.byteLength} bytes; at most ${COMMAND_BYTES_MAX}`,
    );
  }
  return out;
}

export type DecodedCommand = { ok: true; command: ControlCommand } | { ok: false; reason: string };

export function decodeCommand(bytes: Uint8Array): DecodedCommand {
  if (bytes.byteLength === 0) return { ok: false, reason: "empty command" };
  if (bytes.byteLength > COMMAND_BYTES_MAX) {
    return { ok: false, reason: `command of ${bytes.byteLength} bytes; at most ${COMMAND_BYTES_MAX}` };
  }
  if (bytes[0] !== COMMAND_CODEC_VERSION) {
    return {
      ok: false,
      reason: `command codec version ${bytes[0]}; this peer reads ${COMMAND_CODEC_VERSION}`,
    };
  }
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(1)));
  } catch {
    return { ok: false, reason: "command is not UTF-8 JSON" };
  }
  try {
    return { ok: true, command: decodeCommandBody(value) };
  } catch (e) {
    if (e instanceof ControlShapeInvalid) return { ok: false, reason: e.message };
    throw e;
  }
}

function decodeCommandBody(value: unknown): ControlCommand {
  const o = object(value, "command");
  const type = str(o, "type", "command", 32);
  const f = type;
  const keys = (...k: string[]): void => exactKeys(o, f, ["type", ...k]);
  switch (type) {
    case "member.enroll": {
      keys(
        "id",
        "address",
        "zone",
        "weight",
        "policy",
        "ekPublicKey",
        "ekCertificate",
        "joinTokenSha256",
        "joinTokenExpiresAtMs",
        "atMs",
        "founder",
      );
      if (o.founder !== undefined && o.founder !== true) {
        throw new ControlShapeInvalid(`${f}.founder`, "must be true when present");
      }
      const c = {
        type,
        id: nodeId(o, "id", f),
        address: hostPort(o, "address", f),
        zone: str(o, "zone", f, CONTROL_LIMITS.zoneChars, /^[A-Za-z0-9][A-Za-z0-9._-]*$/),
        weight: int(o, "weight", f, 1, CONTROL_LIMITS.weightMax),
        policy: policyName(o, "policy", f),
        ekPublicKey: base64(o, "ekPublicKey", f, CONTROL_LIMITS.ekPublicKeyBytes),
        ekCertificate: base64(o, "ekCertificate", f, CONTROL_LIMITS.ekCertificateBytes),
        // "" only for the founder's own enrollment (founding-duties.ts): control-state.ts refuses it otherwise.
        joinTokenSha256: str(o, "joinTokenSha256", f, 64, /^(?:[0-9a-f]{64})?$/),
        joinTokenExpiresAtMs: time(o, "joinTokenExpiresAtMs", f),
        atMs: time(o, "atMs", f),
        ...(o.founder === true ? { founder: true as const } : {}),
      } as const;
      if (c.ekPublicKey === "" && c.ekCertificate === "") {
        throw new ControlShapeInvalid(`${f}.ekPublicKey`, "an EK certificate or EK public key is required");
      }
      return c;
    }
    case "member.transition":
      keys("id", "from", "to", "reason", "certificateSerial", "atMs");
      return {
        type,
        id: nodeId(o, "id", f),
        from: oneOf(o, "from", f, MEMBER_STATES),
        to: oneOf(o, "to", f, MEMBER_STATES),
        reason: reason(o, "reason", f),
        certificateSerial: str(o, "certificateSerial", f, 64, /^(?:[0-9A-F]{1,64})?$/),
        atMs: time(o, "atMs", f),
      };
    case "member.add-unattested":
      keys("id", "address", "zone", "weight", "certificateSerial", "atMs");
      return {
        type,
        id: nodeId(o, "id", f),
        address: hostPort(o, "address", f),
        zone: str(o, "zone", f, CONTROL_LIMITS.zoneChars, /^[A-Za-z0-9][A-Za-z0-9._-]*$/),
        weight: int(o, "weight", f, 1, CONTROL_LIMITS.weightMax),
        certificateSerial: serial(o, "certificateSerial", f),
        atMs: time(o, "atMs", f),
      };
    case "member.admit":
      keys("id", "from", "certificateSerial", "akPublic", "quoteClock", "atMs");
      return {
        type,
        id: nodeId(o, "id", f),
        from: oneOf(o, "from", f, MEMBER_STATES),
        certificateSerial: serial(o, "certificateSerial", f),
        akPublic: wrappedAk(o, f),
        quoteClock: readQuoteClock(o.quoteClock, `${f}.quoteClock`),
        atMs: time(o, "atMs", f),
      };
    case "member.confirm":
      keys("id", "certificateSerial", "atMs");
      return {
        type,
        id: nodeId(o, "id", f),
        certificateSerial: serial(o, "certificateSerial", f),
        atMs: time(o, "atMs", f),
      };
    case "member.attested":
      keys("id", "quoteClock", "atMs");
      return {
        type,
        id: nodeId(o, "id", f),
        quoteClock: readQuoteClock(o.quoteClock, `${f}.quoteClock`),
        atMs: time(o, "atMs", f),
      };
    case "member.reenroll": {
      keys("id", "ekPublicKey", "ekCertificate", "akPublic", "quoteClock", "reason", "atMs");
      const c = {
        type,
        id: nodeId(o, "id", f),
        ekPublicKey: base64(o, "ekPublicKey", f, CONTROL_LIMITS.ekPublicKeyBytes),
        ekCertificate: base64(o, "ekCertificate", f, CONTROL_LIMITS.ekCertificateBytes),
        akPublic: wrappedAk(o, f),
        quoteClock: readQuoteClock(o.quoteClock, `${f}.quoteClock`),
        reason: reason(o, "reason", f),
        atMs: time(o, "atMs", f),
      } as const;
      if (c.ekPublicKey === "") throw new ControlShapeInvalid(`${f}.ekPublicKey`, "is empty");
      return c;
    }
    case "member.address":
      keys("id", "address");
      return { type, id: nodeId(o, "id", f), address: hostPort(o, "address", f) };
    case "policy.put":
      keys("name", "policy", "atMs");
      return {
        type,
        name: policyName(o, "name", f),
        policy: quotePolicy(o.policy, `${f}.policy`),
        atMs: time(o, "atMs", f),
      };
    case "policy.remove":
      keys("name");
      return { type, name: policyName(o, "name", f) };
    case "ring.put":
      keys("ring");
      return { type, ring: readRing(o.ring, `${f}.ring`, CONTROL_LIMITS.ringPartBytes) };
    case "ring.part": {
      keys("version", "index", "count", "bytes");
      const count = int(o, "count", f, 2, CONTROL_LIMITS.ringParts);
      const index = int(o, "index", f, 0, count - 1);
      const bytes = base64(o, "bytes", f, CONTROL_LIMITS.ringPartBytes);
      // Parts concatenate as base64 only if no part but the last is padded or short of a whole part.
      if (
        bytes.length === 0 ||
        (index < count - 1 && bytes.length !== (CONTROL_LIMITS.ringPartBytes / 3) * 4)
      )
        throw new ControlShapeInvalid(`${f}.bytes`, "is not a whole part of a ring");
      return { type, version: int(o, "version", f, 1, Number.MAX_SAFE_INTEGER), index, count, bytes };
    }
    case "cmk.epoch-add":
      keys("epoch", "atMs");
      return { type, epoch: epoch(o, "epoch", f), atMs: time(o, "atMs", f) };
    case "cmk.epoch-state":
      keys("epoch", "state");
      return { type, epoch: epoch(o, "epoch", f), state: oneOf(o, "state", f, CMK_EPOCH_STATES) };
    case "cmk.epoch-stage":
      keys("epoch", "holder", "atMs");
      return { type, epoch: epoch(o, "epoch", f), holder: nodeId(o, "holder", f), atMs: time(o, "atMs", f) };
    case "cmk.epoch-held":
      keys("epoch", "member");
      return { type, epoch: epoch(o, "epoch", f), member: nodeId(o, "member", f) };
    case "cmk.epoch-activate":
      keys("epoch");
      return { type, epoch: epoch(o, "epoch", f) };
    case "kek.create":
      keys("project", "epoch", "wrapped");
      return {
        type,
        project: projectName(o, "project", f),
        epoch: epoch(o, "epoch", f),
        wrapped: wrapped(o, "wrapped", f),
      };
    case "kek.rewrap":
      keys("project", "fromEpoch", "epoch", "wrapped");
      return {
        type,
        project: projectName(o, "project", f),
        fromEpoch: epoch(o, "fromEpoch", f),
        epoch: epoch(o, "epoch", f),
        wrapped: wrapped(o, "wrapped", f),
      };
    case "kek.delete":
      keys("project");
      return { type, project: projectName(o, "project", f) };
    case "ca.set":
      keys("ca");
      return { type, ca: readClusterCa(o.ca, `${f}.ca`) };
    case "identity.issue": {
      keys("name", "role", "projects", "issued", "atMs");
      const projects = array(o, "projects", f, CONTROL_LIMITS.projectsPerIdentity).map((p, i) => {
        if (typeof p !== "string" || !isValidProjectName(p)) {
          throw new ControlShapeInvalid(`${f}.projects[${i}]`, "is not a project name");
        }
        return p;
      });
      if (new Set(projects).size !== projects.length) {
        throw new ControlShapeInvalid(`${f}.projects`, "names a project twice");
      }
      return {
        type,
        name: identityName(o, "name", f),
        role: oneOf(o, "role", f, ROLES),
        projects,
        issued: readIssuedSerial(o.issued, `${f}.issued`),
        atMs: time(o, "atMs", f),
      };
    }
    case "identity.revoke":
      keys("name", "reason", "atMs");
      return {
        type,
        name: identityName(o, "name", f),
        reason: reason(o, "reason", f),
        atMs: time(o, "atMs", f),
      };
    case "certificate.revoke":
      keys("serial", "subject", "reason", "atMs");
      return {
        type,
        serial: serial(o, "serial", f),
        subject: str(o, "subject", f, 128, /^[\x20-\x7e]*$/),
        reason: reason(o, "reason", f),
        atMs: time(o, "atMs", f),
      };
    default:
      throw new ControlShapeInvalid("command.type", `unknown command type`);
  }
}

function wrappedAk(o: Obj, f: string): string {
  const v = base64(o, "akPublic", f, CONTROL_LIMITS.akPublicBytes);
  if (v === "") throw new ControlShapeInvalid(`${f}.akPublic`, "is empty");
  return v;
}

export type { Obj };
