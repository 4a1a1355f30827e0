/**
 * The peer's handle on the replicated control state: propose a command from any peer (the raft core
 * takes proposals only on the leader, so a follower forwards them to the leader over PeerService.Propose),
 * read with a ReadIndex barrier where a read must be current, mirror member addresses into the raft
 * transport, and decide who may call: peers (admitPeer) and clients (clientRefusal).
 */
import * as grpc from "@grpc/grpc-js";
import type { RaftDriver } from "../../cluster/raft/driver/raft-driver.js";
import { RaftDriverError } from "../../cluster/raft/driver/errors.js";
import { isNodeId } from "../../cluster/node-id.js";
import { LockboxError, type LockboxErrorCode } from "../errors.js";
import type { PeerIdentity } from "../pki/peer-certificate-verifier.js";
import type { PeerRefusal } from "../pki/peer-refusal.js";
import type { GrpcPeerTransport } from "../raft/grpc-peer-transport.js";
import { COMMAND_BYTES_MAX, decodeCommand, encodeCommand, type ControlCommand } from "./control-command.js";
import type { ControlRefusalCode, ControlResult, ControlState } from "./control-state.js";

export interface ControlPlaneOptions {
  peerId: string;
  state: ControlState;
  log: (line: string) => void;
  /** How long one proposal may take, forwarding included. */
  proposeTimeoutMs?: number;
}

/** What a committed command answered, and where it landed. */
export interface Proposed {
  index: number;
  result: ControlResult;
}

const PROPOSE_TIMEOUT_MS = 5_000;
/** Forwarding hops (a leader change between hops sends the proposal on) before giving up, retryably. */
const FORWARD_HOPS_MAX = 3;
const NO_LEADER_WAIT_MS = 200;

export class ControlPlane {
  readonly peerId: string;
  readonly state: ControlState;
  readonly #log: (line: string) => void;
  readonly #timeoutMs: number;
  #driver: RaftDriver<ControlResult> | undefined;
  #transport: GrpcPeerTransport | undefined;

  constructor(options: ControlPlaneOptions) {
    this.peerId = options.peerId;
    this.state = options.state;
    this.#log = options.log;
    this.#timeoutMs = options.proposeTimeoutMs ?? PROPOSE_TIMEOUT_MS;
    // The raft transport dials members at the addresses the control state holds.
    this.state.onChange((change) => {
      if (change.kind === "member") this.#mirrorAddress(change.member.id);
      if (change.kind === "restored") for (const m of this.state.members()) this.#mirrorAddress(m.id);
    });
  }

  /** Connects the raft node once it started (the state machine exists before the driver restores it). */
  attach(driver: RaftDriver<ControlResult>, transport: GrpcPeerTransport): void {
    this.#driver = driver;
    this.#transport = transport;
    for (const m of this.state.members()) this.#mirrorAddress(m.id);
  }

  get driver(): RaftDriver<ControlResult> {
    if (this.#driver === undefined) throw new LockboxError("UNAVAILABLE", "the control plane is not started");
    return this.#driver;
  }

  isLeader(): boolean {
    return this.#driver?.status().role === "leader";
  }

  /**
   * Replicates `command` through the leader, wherever it is, and resolves with the state machine's
   * answer once it applied on the leader (and, when proposed here, here). Rejects UNAVAILABLE (retryable:
   * no leader, timeout with an unknown outcome, stopped).
   */
  async propose(command: ControlCommand): Promise<Proposed> {
    const data = encodeCommand(command);
    const deadline = Date.now() + this.#timeoutMs;
    for (let hop = 0; hop <= FORWARD_HOPS_MAX; hop++) {
      const driver = this.driver;
      const status = driver.status();
      if (status.role === "leader") {
        try {
          const applied = await driver.propose(data, Math.max(1, deadline - Date.now()));
          return { index: applied.index, result: applied.result };
        } catch (e) {
          if (e instanceof RaftDriverError && e.code === "NOT_LEADER") continue;
          throw unavailable(e);
        }
      }
      const leader = status.leader;
      if (leader === null || leader === this.peerId) {
        if (Date.now() + NO_LEADER_WAIT_MS > deadline) break;
        await sleep(NO_LEADER_WAIT_MS);
        continue;
      }
      const answer = await this.#forward(leader, data, deadline);
      if (answer !== "not-leader") return answer;
      await sleep(Math.min(NO_LEADER_WAIT_MS, Math.max(0, deadline - Date.now())));
    }
    throw new LockboxError("UNAVAILABLE", "the control state has no reachable leader; retry");
  }

  /** propose() that turns a refusal into a LockboxError (for callers that want the change or an error). */
  async proposeOrThrow(command: ControlCommand): Promise<Proposed & { result: { ok: true } }> {
    const proposed = await this.propose(command);
    if (!proposed.result.ok) throw refusalError(proposed.result.code, proposed.result.reason);
    return proposed as Proposed & { result: { ok: true } };
  }

  /** The state, once it has applied every entry committed before this call (ReadIndex). */
  async readCurrent(): Promise<ControlState> {
    try {
      await this.driver.read();
    } catch (e) {
      throw unavailable(e);
    }
    return this.state;
  }

  /**
   * Peer admission (DESIGN.md §3): the certificate must be a current, non-fenced member's, and not
   * revoked. A peer whose control state is still empty (it waits to be added to the cluster, and holds
   * no secret) admits any peer certificate of the cluster CA, or it could never receive the state.
   */
  admitPeer(peer: PeerIdentity): string | null {
    return this.peerRefusal(peer)?.reason ?? null;
  }

  /** admitPeer as a value: the code (fenced, removed, ...) travels to the refused peer (pki/peer-refusal.ts). */
  peerRefusal(peer: PeerIdentity): PeerRefusal | null {
    const refuse = (code: PeerRefusal["code"], reason: string): PeerRefusal => ({ code, reason });
    if (this.state.revocation(peer.serialNumber) !== undefined)
      return refuse("revoked", "its certificate is revoked");
    if (this.state.empty) {
      // Only a peer that waits to be added (no voter of its own configuration) admits before it holds
      // state; the founding voter admits nobody until its first records exist.
      const founding = this.#driver?.status().confState.voters.includes(this.peerId) ?? true;
      return founding ? refuse("not-founded", "the control state is not founded yet") : null;
    }
    const m = this.state.member(peer.peerId);
    if (m === undefined) return refuse("not-member", "not a member of this cluster");
    if (m.state === "removed") return refuse("removed", "removed from the cluster");
    if (m.state === "fenced") return refuse("fenced", `fenced: ${m.reason}`);
    if (m.state === "enrolled") return refuse("not-joined", "enrolled but not joined");
    // Admitted but not confirmed: it may never have got its key (attested join, two steps).
    if (m.state === "joining") return refuse("not-joined", "admitted, but its join is not confirmed");
    if (m.certificateSerial !== "" && m.certificateSerial !== peer.serialNumber) {
      return refuse("wrong-certificate", "not the certificate this member joined with");
    }
    return null;
  }

  /** Why a client certificate (identity name and serial) is refused, or null: revocations commit cluster-wide. */
  clientRefusal(identity: string, serialNumber: string): string | null {
    if (this.state.revocation(serialNumber) !== undefined) return "this certificate is revoked";
    if (this.state.identity(identity)?.revoked === true) return `identity ${identity} is revoked`;
    return null;
  }

  /** PeerService.Propose: a follower's forwarded proposal, served on the leader. */
  proposeHandler(): grpc.handleUnaryCall<unknown, object> {
    return (call, callback) => {
      void (async () => {
        const transport = this.#transport;
        if (transport === undefined)
          return callback({ code: grpc.status.UNAVAILABLE, details: "not started" });
        const peer = transport.authenticateCall(call);
        if (typeof peer !== "string") return callback(peer);
        const req = call.request as { from?: unknown; command?: unknown } | null;
        if (req?.from !== peer) {
          return callback({
            code: grpc.status.PERMISSION_DENIED,
            details: `peer ${peer} may propose only as itself`,
          });
        }
        const bytes = req.command;
        if (!(bytes instanceof Uint8Array) || bytes.byteLength > COMMAND_BYTES_MAX) {
          return callback({ code: grpc.status.INVALID_ARGUMENT, details: "command: missing or too long" });
        }
        // Checked here too, so a forwarded command the state machine would refuse to decode costs no log entry.
        const decoded = decodeCommand(bytes);
        if (!decoded.ok)
          return callback({ code: grpc.status.INVALID_ARGUMENT, details: `command: ${decoded.reason}` });
        const driver = this.driver;
        if (driver.status().role !== "leader") {
          return callback(null, {
            result: "",
            not_leader: true,
            leader: driver.status().leader ?? "",
            index: 0,
          });
        }
        try {
          const applied = await driver.propose(bytes);
          callback(null, {
            result: JSON.stringify(applied.result),
            not_leader: false,
            leader: "",
            index: applied.index,
          });
        } catch (e) {
          if (e instanceof RaftDriverError && e.code === "NOT_LEADER") {
            return callback(null, {
              result: "",
              not_leader: true,
              leader: driver.status().leader ?? "",
              index: 0,
            });
          }
          callback({ code: grpc.status.UNAVAILABLE, details: e instanceof Error ? e.message : String(e) });
        }
      })();
    };
  }

  async #forward(leader: string, data: Uint8Array, deadline: number): Promise<Proposed | "not-leader"> {
    const client = this.#transport?.peerClient(leader) as unknown as ProposeClient | undefined;
    if (client === undefined) return "not-leader";
    const answer = await new Promise<{ result: string; not_leader: boolean; leader: string; index: number }>(
      (resolve, reject) => {
        client.Propose({ from: this.peerId, command: data }, { deadline }, (err, res) =>
          err !== null || res === undefined ? reject(err ?? new Error("no answer")) : resolve(res),
        );
      },
    ).catch((e: unknown) => {
      const code = (e as { code?: number }).code;
      this.#log(`control: forwarding a proposal to ${leader} failed: ${(e as Error).message}`);
      if (code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED) return undefined;
      throw new LockboxError(
        "UNAVAILABLE",
        `the leader ${leader} refused a forwarded proposal: ${(e as Error).message}`,
      );
    });
    if (answer === undefined || answer.not_leader) return "not-leader";
    return { index: Number(answer.index), result: parseResult(answer.result) };
  }

  #mirrorAddress(id: string): void {
    const transport = this.#transport;
    if (transport === undefined || id === this.peerId || !isNodeId(id)) return;
    const m = this.state.member(id);
    // A fenced member is sent nothing until it attests again (DESIGN.md §5), a removed one never again.
    if (m === undefined || m.state === "removed" || m.state === "fenced") transport.removePeer(id);
    else transport.setPeerAddress(id, m.address);
  }
}

type ProposeClient = {
  Propose(
    req: { from: string; command: Uint8Array },
    options: grpc.CallOptions,
    callback: (
      err: grpc.ServiceError | null,
      res?: { result: string; not_leader: boolean; leader: string; index: number },
    ) => void,
  ): void;
};

const REFUSAL_CODES: Record<ControlRefusalCode, LockboxErrorCode> = {
  malformed: "INVALID_ARGUMENT",
  "not-found": "NOT_FOUND",
  "already-exists": "ALREADY_EXISTS",
  conflict: "FAILED_PRECONDITION",
  "failed-precondition": "FAILED_PRECONDITION",
  limit: "RESOURCE_EXHAUSTED",
};

export function refusalError(code: ControlRefusalCode, reason: string): LockboxError {
  return new LockboxError(REFUSAL_CODES[code], reason);
}

/** The leader's JSON answer, read as a ControlResult (only the shape; it came over an authenticated link). */
function parseResult(text: string): ControlResult {
  try {
    const v = JSON.parse(text) as { ok?: unknown; code?: unknown; reason?: unknown; value?: unknown };
    if (v.ok === true) return v.value === undefined ? { ok: true } : { ok: true, value: v.value };
    if (
      v.ok === false &&
      typeof v.code === "string" &&
      v.code in REFUSAL_CODES &&
      typeof v.reason === "string"
    ) {
      return { ok: false, code: v.code as ControlRefusalCode, reason: v.reason };
    }
  } catch {
    /* below */
  }
  throw new LockboxError("UNAVAILABLE", "the leader answered a forwarded proposal with an unreadable result");
}

function unavailable(e: unknown): LockboxError {
  if (e instanceof LockboxError) return e;
  return new LockboxError(
    "UNAVAILABLE",
    `control state: ${e instanceof Error ? e.message : String(e)}; retry`,
    undefined,
    {
      cause: e,
    },
  );
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
