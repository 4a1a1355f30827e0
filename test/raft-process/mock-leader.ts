/**
 * A mock raft leader "1" for driver tests: node "2" is a real driver (LevelDB,
 * gRPC transport) and the test plays its leader over real gRPC, so it can send
 * what a real leader would only send under rare timing (late, forged, floods).
 */
import * as grpc from "@grpc/grpc-js";
import type { Message } from "../../cluster/raft/core/types.js";
import { RaftDriver, type RaftDriverOptions } from "../../cluster/raft/driver/raft-driver.js";
import type { PeerTransport } from "../../cluster/raft/driver/peer-transport.js";
import type { RaftStorage } from "../../cluster/raft/driver/raft-storage.js";
import { IntervalTicker } from "../../cluster/raft/driver/ticker.js";
import { peerGrpcOptions } from "../../src/raft/grpc-peer-transport.js";
import { loadPeerProto } from "../../src/raft/peer-proto.js";
import { encodeMessage } from "../../src/raft/raft-wire-codec.js";
import { sleep } from "./control-cluster.js";
import { ControlStateMachine } from "./control-node/control-state-machine.js";
import type { KvApplyResult } from "./control-node/kv-state-machine.js";
import { peerClientCredentials, peerServerCredentials } from "./peer-tls.js";

export type Server = { server: grpc.Server; address: string };

/** A PeerService server with `handlers`, presenting the peer certificate of `id` (default "1"). */
export async function serve(
  t: { teardown(fn: () => unknown): void },
  handlers: grpc.UntypedServiceImplementation,
  id = "1",
) {
  const credentials = await peerServerCredentials(id);
  const server = new grpc.Server(peerGrpcOptions());
  server.addService(loadPeerProto().PeerService.service, handlers);
  t.teardown(() => server.forceShutdown());
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { server, address: `127.0.0.1:${port}` } satisfies Server;
}

/**
 * Writes `messages` as one batch from "1" on a Raft stream to `address`, over mTLS with the peer
 * certificate of "1"; resolves when it ended.
 */
export async function sendFromLeader(address: string, messages: Message[]): Promise<void> {
  const client = new (loadPeerProto().PeerService)(address, await peerClientCredentials("1"));
  try {
    await new Promise<void>((resolve, reject) => {
      const stream = (
        client as unknown as {
          Raft(cb: (e: grpc.ServiceError | null) => void): grpc.ClientWritableStream<object>;
        }
      ).Raft((e) => (e ? reject(e) : resolve()));
      stream.write({ from: "1", messages: messages.map(encodeMessage) });
      stream.end();
    });
  } finally {
    client.close();
  }
}

export const blank = (type: Message["type"]): Message => ({
  type,
  from: "1",
  to: "2",
  term: 1,
  logTerm: 0,
  index: 0,
  entries: [],
  commit: 0,
  reject: false,
  rejectHint: 0,
  rejectHintTerm: 0,
  snapshot: null,
  context: new Uint8Array(0),
});

/** Bounded wait for `pred`. */
export async function until(pred: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * Starts the real driver of node "2" in the group {1, 2, 3} whose leader "1" is the test.
 * `electionTicks` defaults so high that node 2 never campaigns: the mock stays the only leader.
 */
export function startFollowerDriver(
  storage: RaftStorage,
  transport: PeerTransport,
  options: { electionTicks?: number } & Partial<RaftDriverOptions<KvApplyResult>> = {},
): Promise<RaftDriver<KvApplyResult>> {
  const { electionTicks = 100_000, ...rest } = options;
  return RaftDriver.start<KvApplyResult>({
    config: {
      id: "2",
      electionTicks,
      heartbeatTicks: 1,
      inflightMax: 8,
      batchEntriesMax: 8,
      batchBytesMax: 1 << 20,
      checkQuorum: true,
      preVote: true,
      random: { nextInt: (max) => Math.floor(Math.random() * max) },
    },
    storage,
    transport,
    stateMachine: new ControlStateMachine(() => {}),
    ticker: new IntervalTicker(10),
    bootstrapVoters: ["1", "2", "3"],
    ...rest,
  });
}
