#!/usr/bin/env node
/**
 * TEST ONLY: a raft member process for the real-process tests and the raft benchmark: RaftDriver + the
 * peer's raft storage (the `raft` sublevel of a PeerStore, written through its group commit, as in the
 * peer) + the peer's gRPC transport (src/raft, mTLS) + a key-value state machine +
 * the test-only ControlService (test/proto/lockbox/test/v1/control.proto), all on one gRPC server. A
 * lockbox peer runs the same src/raft parts inside `lockbox serve` (src/peer/start-peer.ts).
 *
 *   node dist/test/raft-process/control-node/control-node-main.js --id 1 --dir DIR \
 *        --listen 127.0.0.1:PORT --tls-dir TLS --peers 1=127.0.0.1:P1,2=127.0.0.1:P2,3=127.0.0.1:P3 [--join]
 *
 * TLS holds ca.crt, peer.crt and peer.key: this node's peer certificate (common name = --id) from the
 * test cluster CA (test/raft-process/peer-tls.ts).
 *
 * Without --join the ids in --peers are the founding voters (stored as the bootstrap configuration on the
 * first start only). With --join the node starts with an empty configuration and waits to be added as a
 * learner by the leader; --peers then only tells it where the members are.
 *
 * Prints one JSON line {"ready":true,...} on stdout once listening; diagnostics go to stderr. SIGTERM and
 * SIGINT stop cleanly (exit 0). Every acknowledged write was fsync'd before it was acknowledged, so
 * SIGKILL loses nothing acknowledged. A storage or invariant failure exits with status 1 (fail-stop).
 */
import * as grpc from "@grpc/grpc-js";
import { randomInt } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { RaftDriver } from "../../../cluster/raft/driver/raft-driver.js";
import { IntervalTicker } from "../../../cluster/raft/driver/ticker.js";
import type { NodeId, RaftConfig } from "../../../cluster/raft/core/types.js";
import { isNodeId, NODE_ID_RULE } from "../../../cluster/node-id.js";
import { describeHostPort, formatHostPort, isHostPort, parseHostPort } from "../../../src/net/host-port.js";
import { GrpcPeerTransport, peerGrpcOptions } from "../../../src/raft/grpc-peer-transport.js";
import { peerRaftStorage } from "../../../src/raft/peer-raft.js";
import { loadPeerProto } from "../../../src/raft/peer-proto.js";
import { openPeerStore } from "../../../src/store/peer-store.js";
import { ControlStateMachine } from "./control-state-machine.js";
import { CertificateRequestingServerCredentials } from "../peer-tls.js";
import { loadControlService } from "./control-proto.js";
import { controlServiceHandlers } from "./control-service.js";

export interface ControlNodeArgs {
  id: NodeId;
  dir: string;
  listen: string;
  tlsDir: string;
  peers: Map<NodeId, string>;
  join: boolean;
  tickMs: number;
  electionTicks: number;
  heartbeatTicks: number;
  snapshotEntries: number;
  requestTimeoutMs: number;
}

const USAGE =
  "usage: control-node-main --id ID --dir DIR --listen 127.0.0.1:PORT --tls-dir DIR --peers ID=HOST:PORT,...\n" +
  "       [--join]\n" +
  "       [--tick-ms 50] [--election-ticks 10] [--heartbeat-ticks 1] [--snapshot-entries 10000]\n" +
  "       [--request-timeout-ms 5000]";

const KNOWN_FLAGS = [
  "id",
  "dir",
  "listen",
  "tls-dir",
  "peers",
  "tick-ms",
  "election-ticks",
  "heartbeat-ticks",
  "snapshot-entries",
  "request-timeout-ms",
];

export class UsageError extends Error {
  override readonly name = "UsageError";
  readonly code = "USAGE";
}

export function parseArgs(argv: string[]): ControlNodeArgs {
  const flags = new Map<string, string>();
  let join = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--join") {
      join = true;
      continue;
    }
    const v = argv[i + 1];
    if (!a.startsWith("--") || v === undefined) throw new UsageError(`unexpected argument ${a}`);
    flags.set(a.slice(2), v);
    i++;
  }
  const need = (k: string): string => {
    const v = flags.get(k);
    if (v === undefined) throw new UsageError(`--${k} is required`);
    return v;
  };
  const int = (k: string, dflt: number, min: number): number => {
    const v = flags.get(k);
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${k} must be an integer >= ${min}`);
    return n;
  };
  const id = need("id");
  if (!isNodeId(id)) throw new UsageError(`--id must be ${NODE_ID_RULE}`);
  const listen = need("listen");
  if (!isHostPort(listen)) throw new UsageError(`--listen must be ${describeHostPort()}`);
  const peers = new Map<NodeId, string>();
  for (const item of need("peers").split(",")) {
    const [pid, addr] = item.split("=");
    if (pid === undefined || addr === undefined || !isNodeId(pid) || !isHostPort(addr)) {
      throw new UsageError(`--peers item ${JSON.stringify(item)} is not ID=HOST:PORT`);
    }
    if (peers.has(pid)) throw new UsageError(`--peers lists ${pid} twice`);
    peers.set(pid, addr);
  }
  if (!join && !peers.has(id))
    throw new UsageError("--peers must include this node's --id (founding voters)");
  for (const k of flags.keys()) {
    if (!KNOWN_FLAGS.includes(k)) throw new UsageError(`unknown flag --${k}`);
  }
  const heartbeatTicks = int("heartbeat-ticks", 1, 1);
  const electionTicks = int("election-ticks", 10, 2);
  if (electionTicks < 2 * heartbeatTicks)
    throw new UsageError("--election-ticks must be >= 2 * --heartbeat-ticks");
  return {
    id,
    dir: need("dir"),
    listen,
    tlsDir: need("tls-dir"),
    peers,
    join,
    tickMs: int("tick-ms", 50, 1),
    electionTicks,
    heartbeatTicks,
    snapshotEntries: int("snapshot-entries", 10_000, 1),
    requestTimeoutMs: int("request-timeout-ms", 5_000, 1),
  };
}

const log = (line: string): void => void process.stderr.write(`${new Date().toISOString()} ${line}\n`);

async function bindWithRetry(
  server: grpc.Server,
  address: string,
  credentials: grpc.ServerCredentials,
): Promise<number> {
  // A restarted node reuses its port; tolerate a short overlap with whatever held it.
  for (let attempt = 0; ; attempt++) {
    try {
      return await new Promise<number>((resolve, reject) =>
        server.bindAsync(address, credentials, (err, port) => (err ? reject(err) : resolve(port))),
      );
    } catch (e) {
      if (attempt >= 40) throw e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

export async function runControlNode(args: ControlNodeArgs): Promise<void> {
  mkdirSync(args.dir, { recursive: true });
  const store = await openPeerStore(join(args.dir, "leveldb"));
  const storage = peerRaftStorage(store);

  const tls = {
    caCertificatePem: readFileSync(join(args.tlsDir, "ca.crt"), "utf8"),
    certificatePem: readFileSync(join(args.tlsDir, "peer.crt"), "utf8"),
    privateKeyPem: readFileSync(join(args.tlsDir, "peer.key"), "utf8"),
  };
  const transport = new GrpcPeerTransport({ id: args.id, tls, peers: args.peers, log });
  const sm = new ControlStateMachine((id, address) => {
    if (address === null) transport.removePeer(id);
    else transport.setPeerAddress(id, address);
  });
  const config: RaftConfig = {
    id: args.id,
    electionTicks: args.electionTicks,
    heartbeatTicks: args.heartbeatTicks,
    inflightMax: 256,
    batchEntriesMax: 512,
    // As in the peer (src/peer/start-peer.ts): an append batch fits in one peer message.
    batchBytesMax: 32 * 1024,
    checkQuorum: true,
    preVote: true,
    random: { nextInt: (max) => randomInt(max) },
  };

  let shuttingDown = false;
  const driver = await RaftDriver.start({
    config,
    storage,
    transport,
    stateMachine: sm,
    ticker: new IntervalTicker(args.tickMs),
    ...(args.join ? {} : { bootstrapVoters: [...args.peers.keys()] }),
    snapshotEntries: args.snapshotEntries,
    proposeTimeoutMs: args.requestTimeoutMs,
    // An entry must fit in one append message with room to spare (PEER_MESSAGE_BYTES_MAX).
    proposalBytesMax: 16 * 1024,
    readTimeoutMs: args.requestTimeoutMs,
    onConfChange: (change) => sm.recordConfChange(change),
    onFatal: (e) => {
      log(`control-node ${args.id}: fatal: ${e instanceof Error ? e.stack : String(e)}`);
      process.exit(1);
    },
    log,
  });

  const server = new grpc.Server(peerGrpcOptions());
  server.addService(loadPeerProto().PeerService.service, transport.serviceHandlers());
  server.addService(loadControlService().service, controlServiceHandlers(driver, sm, transport, log));
  const port = await bindWithRetry(server, args.listen, new CertificateRequestingServerCredentials(tls));

  const shutdown = async (signal: string): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    log(`control-node ${args.id}: ${signal}, stopping`);
    await driver.stop(signal);
    await transport.close();
    // Peers' inbound raft streams never end by themselves: give calls a moment, then cut them.
    await new Promise<void>((r) => {
      const force = setTimeout(() => {
        server.forceShutdown();
        r();
      }, 1_000);
      server.tryShutdown(() => {
        clearTimeout(force);
        r();
      });
    });
    await store.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));

  process.stdout.write(
    JSON.stringify({
      ready: true,
      id: args.id,
      listen: formatHostPort({ host: parseHostPort(args.listen)!.host, port }),
      pid: process.pid,
    }) + "\n",
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  let args: ControlNodeArgs;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`${e.message}\n${USAGE}\n`);
    process.exit(2);
  }
  runControlNode(args).catch((e: unknown) => {
    log(`control-node ${args.id}: failed to start: ${e instanceof Error ? e.stack : String(e)}`);
    process.exit(1);
  });
}
