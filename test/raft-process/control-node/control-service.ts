/**
 * TEST ONLY: lockbox.test.v1.ControlService handlers of a control-node process: key-value proposals and reads, status,
 * and membership operations, over a RaftDriver. Driver errors become gRPC statuses here and only here
 * (toGrpcStatus below): NotLeader -> FAILED_PRECONDITION with the leader hint in trailing metadata,
 * Timeout -> DEADLINE_EXCEEDED (outcome unknown), Stopped -> UNAVAILABLE, bad fields -> INVALID_ARGUMENT.
 */
import * as grpc from "@grpc/grpc-js";
import {
  Busy,
  InvalidArgument,
  NotLeader,
  Rejected,
  Stopped,
  Timeout,
} from "../../../cluster/raft/driver/errors.js";
import type { RaftDriver } from "../../../cluster/raft/driver/raft-driver.js";
import { isNodeId, NODE_ID_RULE } from "../../../cluster/node-id.js";
import type { GrpcPeerTransport } from "../../../src/raft/grpc-peer-transport.js";
import { describeHostPort, isHostPort } from "../../../src/net/host-port.js";
import { encodeAddress, type ControlStateMachine } from "./control-state-machine.js";
import { encodeKvCommand, KvCommandInvalid, type KvApplyResult, type KvCommand } from "./kv-state-machine.js";
import { LEADER_HINT_METADATA_KEY } from "./control-proto.js";

type Handler = (call: grpc.ServerUnaryCall<Record<string, unknown>, object>) => Promise<object>;

export function controlServiceHandlers(
  driver: RaftDriver<KvApplyResult>,
  sm: ControlStateMachine,
  transport: GrpcPeerTransport,
  log: (line: string) => void,
): grpc.UntypedServiceImplementation {
  const handlers: Record<string, Handler> = {
    async Propose({ request: r }) {
      const cmd: KvCommand =
        r.op === "set"
          ? { op: "set", key: str(r.key), value: str(r.value) }
          : r.op === "delete"
            ? { op: "delete", key: str(r.key) }
            : invalid("op", "must be set or delete");
      const data = encodeKvCommand(cmd);
      const { index, result } = await driver.propose(data);
      if (!result.ok) throw new InvalidArgument("command", result.reason);
      return { index, existed: result.existed ?? false };
    },

    async Read({ request: r }) {
      const key = str(r.key);
      if (key.length === 0) invalid("key", "must be non-empty");
      const index = r.linearizable === true ? await driver.read() : driver.appliedIndex;
      const value = sm.kv.get(key);
      return { found: value !== undefined, value: value ?? "", index };
    },

    async Status() {
      const s = driver.status();
      return {
        id: s.id,
        leader: s.leader ?? "",
        term: s.term,
        role: s.role,
        voters: s.confState.voters,
        learners: s.confState.learners,
        commit: s.commit,
        applied: s.appliedIndex,
        snapshot_index: s.snapshotIndex,
        transport: transport.counters(),
      };
    },

    async AddLearner({ request: r }) {
      const id = memberId(r.id);
      const address = str(r.address);
      if (!isHostPort(address)) invalid("address", `must be ${describeHostPort()}`);
      return driver.addLearner(id, encodeAddress(address));
    },

    async Promote({ request: r }) {
      return driver.promote(memberId(r.id));
    },

    async RemoveVoter({ request: r }) {
      return driver.removeVoter(memberId(r.id));
    },

    async TransferLeadership({ request: r }) {
      await driver.transferLeadership(memberId(r.id));
      return {};
    },
  };

  const out: grpc.UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(handlers)) {
    out[name] = (
      call: grpc.ServerUnaryCall<Record<string, unknown>, object>,
      cb: grpc.sendUnaryData<object>,
    ) => {
      handler(call).then(
        (res) => cb(null, res),
        (e: unknown) => {
          const status = toGrpcStatus(e);
          if (status.code === grpc.status.INTERNAL) {
            log(`control service: ${name} failed: ${e instanceof Error ? e.stack : String(e)}`);
          }
          cb(status);
        },
      );
    };
  }
  return out;
}

/** The one place where errors become wire statuses. Never leaks anything but the typed message. */
export function toGrpcStatus(e: unknown): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  if (e instanceof NotLeader) {
    if (e.leaderHint !== "") metadata.set(LEADER_HINT_METADATA_KEY, e.leaderHint);
    return { code: grpc.status.FAILED_PRECONDITION, details: e.message, metadata };
  }
  if (e instanceof Timeout) return { code: grpc.status.DEADLINE_EXCEEDED, details: e.message };
  if (e instanceof Stopped) return { code: grpc.status.UNAVAILABLE, details: e.message };
  if (e instanceof InvalidArgument || e instanceof KvCommandInvalid) {
    return { code: grpc.status.INVALID_ARGUMENT, details: e.message };
  }
  if (e instanceof Rejected) return { code: grpc.status.FAILED_PRECONDITION, details: e.message };
  if (e instanceof Busy) return { code: grpc.status.RESOURCE_EXHAUSTED, details: e.message };
  return { code: grpc.status.INTERNAL, details: "internal error" };
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

function memberId(v: unknown): string {
  const id = str(v);
  if (!isNodeId(id)) invalid("id", `must be ${NODE_ID_RULE}`);
  return id;
}

function invalid(field: string, message: string): never {
  throw new InvalidArgument(field, message);
}
