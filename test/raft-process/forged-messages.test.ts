import test from "ava";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Level } from "level";
import {
  EntryType,
  MessageType,
  RefusalKinds,
  TERM_MAX,
  type Entry,
  type Message,
  type RefusalKind,
} from "../../cluster/raft/core/types.js";
import { Rejected } from "../../cluster/raft/driver/errors.js";
import { RaftDriver } from "../../cluster/raft/driver/raft-driver.js";
import { IntervalTicker } from "../../cluster/raft/driver/ticker.js";
import { GrpcPeerTransport } from "../../src/raft/grpc-peer-transport.js";
import { LevelDbRaftStorage } from "../../src/raft/leveldb-raft-storage.js";
import { loadPeerProto } from "../../src/raft/peer-proto.js";
import { encodeMessage, type WireMessage } from "../../src/raft/raft-wire-codec.js";
import { encodeKvCommand, KvStateMachine, type KvApplyResult } from "./control-node/kv-state-machine.js";
import { serve, until } from "./mock-leader.js";
import { peerClientCredentials, peerTls } from "./peer-tls.js";

const IDS = ["1", "2", "3"] as const;

interface Member {
  id: string;
  address: string;
  driver: RaftDriver<KvApplyResult>;
  sm: KvStateMachine;
  transportLog: string[];
  driverLog: string[];
}

/**
 * Three members in this process, each with its own LevelDB directory, its own gRPC server and the real
 * GrpcPeerTransport between them (real sockets on 127.0.0.1). In-process so the test can read each
 * driver's status(), where the core's refusal counters are.
 */
async function startGroup(t: { teardown(fn: () => unknown): void }): Promise<Map<string, Member>> {
  const root = mkdtempSync(join(tmpdir(), "lockbox-forged-"));
  const members = new Map<string, Member>();
  const parts = await Promise.all(
    IDS.map(async (id) => {
      const transportLog: string[] = [];
      const transport = new GrpcPeerTransport({
        id,
        tls: await peerTls(id),
        log: (l: string) => transportLog.push(l),
      });
      const { address } = await serve(t, transport.serviceHandlers(), id);
      const db = new Level<string, Uint8Array>(join(root, id), { valueEncoding: "view" });
      await db.open();
      return { id, transport, address, db, transportLog };
    }),
  );
  for (const p of parts)
    for (const q of parts) if (q.id !== p.id) p.transport.setPeerAddress(q.id, q.address);
  for (const p of parts) {
    const sm = new KvStateMachine();
    const driverLog: string[] = [];
    const driver = await RaftDriver.start<KvApplyResult>({
      config: {
        id: p.id,
        electionTicks: 30,
        heartbeatTicks: 3,
        inflightMax: 64,
        batchEntriesMax: 64,
        batchBytesMax: 1 << 20,
        checkQuorum: true,
        preVote: true,
        random: { nextInt: (max) => Math.floor(Math.random() * max) },
      },
      storage: new LevelDbRaftStorage(p.db.sublevel<string, Uint8Array>("raft", { valueEncoding: "view" })),
      transport: p.transport,
      stateMachine: sm,
      ticker: new IntervalTicker(10),
      bootstrapVoters: [...IDS],
      log: (l) => driverLog.push(l),
    });
    members.set(p.id, { id: p.id, address: p.address, driver, sm, transportLog: p.transportLog, driverLog });
  }
  t.teardown(async () => {
    for (const m of members.values()) await m.driver.stop();
    for (const p of parts) {
      await p.transport.close();
      await p.db.close();
    }
    rmSync(root, { recursive: true, force: true });
  });
  return members;
}

async function leaderOf(members: Map<string, Member>): Promise<Member> {
  let leader: Member | undefined;
  await until(
    () => {
      const roles = [...members.values()].map((m) => m.driver.status());
      const ls = roles.filter((s) => s.role === "leader");
      leader = ls.length === 1 ? members.get(ls[0]!.id) : undefined;
      return leader !== undefined && roles.every((s) => s.leader === leader!.id && s.term === roles[0]!.term);
    },
    "one leader that every member follows",
    15_000,
  );
  return leader!;
}

/** Writes each wire message as its own batch from `from` on one Raft stream to `address`. */
async function sendRaw(address: string, from: string, messages: WireMessage[]): Promise<void> {
  // Over mTLS as `from`: the forger is a peer whose certificate names it, as a compromised member's would.
  const client = new (loadPeerProto().PeerService)(address, await peerClientCredentials(from));
  try {
    await new Promise<void>((resolve, reject) => {
      const stream = (
        client as unknown as {
          Raft(cb: (e: grpc.ServiceError | null) => void): grpc.ClientWritableStream<object>;
        }
      ).Raft((e) => (e ? reject(e) : resolve()));
      for (const m of messages) stream.write({ from, messages: [m] });
      stream.end();
    });
  } finally {
    client.close();
  }
}

const send = (to: Member, messages: Message[]): Promise<void> =>
  sendRaw(to.address, messages[0]!.from, messages.map(encodeMessage));

function msg(over: Partial<Message> & Pick<Message, "type" | "from" | "to" | "term">): Message {
  return {
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    rejectHintTerm: 0,
    snapshot: null,
    context: new Uint8Array(0),
    ...over,
  };
}

const entry = (index: number, term: number): Entry => ({
  index,
  term,
  type: EntryType.Normal,
  data: encodeKvCommand({ op: "set", key: "forged", value: "forged" }),
  confChange: null,
  confState: null,
});

test("over the real gRPC transport, one forged message of each refused kind reaches a 3-node group: no node stops, the group keeps committing, and the refusals are counted", async (t) => {
  const members = await startGroup(t);
  let leader = await leaderOf(members);
  const set = (key: string, value: string) =>
    leader.driver.propose(encodeKvCommand({ op: "set", key, value }));
  await set("before", "1");
  const s = leader.driver.status();
  const [T, N] = [s.term, s.lastIndex];
  const [f1, f2] = [...members.values()].filter((m) => m !== leader) as [Member, Member];
  const L = leader.id;
  const image = new KvStateMachine().snapshot(); // an image the state machine accepts: only the core judges it
  const confState = { voters: [...IDS], learners: [] };

  const expected = new Map<string, Partial<Record<RefusalKind, number>>>([
    [
      f1.id,
      {
        termTooLarge: 1,
        logTermAboveMessage: 1,
        entryGap: 1,
        entryTermAboveMessage: 1,
        entryTermDecreasing: 1,
        snapshotTermAboveMessage: 1,
      },
    ],
    [f2.id, { notFromLeader: 1, conflictingLeader: 1, fromSelf: 1 }],
    [L, { ackBeyondLog: 1, unknownSender: 1 }],
  ]);
  // Shaped like the leader's own messages, in its term, so they pass every term check.
  await send(f1, [
    msg({ type: MessageType.Heartbeat, from: L, to: f1.id, term: TERM_MAX + 1 }),
    msg({ type: MessageType.Append, from: L, to: f1.id, term: T, index: N, logTerm: T + 1 }),
    msg({
      type: MessageType.Append,
      from: L,
      to: f1.id,
      term: T,
      index: N,
      logTerm: T,
      entries: [entry(N + 2, T)],
    }),
    msg({
      type: MessageType.Append,
      from: L,
      to: f1.id,
      term: T,
      index: N,
      logTerm: T,
      entries: [entry(N + 1, T + 1)],
    }),
    msg({
      type: MessageType.Append,
      from: L,
      to: f1.id,
      term: T + 1,
      index: N,
      logTerm: T,
      entries: [entry(N + 1, T + 1), entry(N + 2, T)],
    }),
    msg({
      type: MessageType.Snapshot,
      from: L,
      to: f1.id,
      term: T,
      snapshot: { metadata: { index: N + 1000, term: T + 1, confState }, data: image },
    }),
  ]);
  // A follower impersonating a leader of the same term, and a message claiming to come from its receiver.
  await send(f2, [msg({ type: MessageType.TimeoutNow, from: f1.id, to: f2.id, term: T })]);
  await send(f2, [msg({ type: MessageType.Heartbeat, from: f1.id, to: f2.id, term: T, commit: N + 50 })]);
  await send(f2, [msg({ type: MessageType.Heartbeat, from: f2.id, to: f2.id, term: T })]);
  // At the leader: an ack for an index it never had, and an ack from a node that is not a member.
  await send(leader, [
    msg({ type: MessageType.AppendResp, from: f2.id, to: L, term: T, index: N + 1_000_000 }),
  ]);
  await send(leader, [msg({ type: MessageType.HeartbeatResp, from: "9", to: L, term: T })]);
  // What never reaches a core: a message of no known type (the codec), one for another node (the transport).
  const unknownType = {
    ...encodeMessage(msg({ type: MessageType.Heartbeat, from: L, to: f1.id, term: T })),
    type: 99,
  };
  await sendRaw(f1.address, L, [unknownType]);
  await send(f1, [msg({ type: MessageType.Heartbeat, from: L, to: f2.id, term: T })]);

  const counts = (m: Member) => m.driver.status().refused;
  const want = (id: string) => ({
    ...Object.fromEntries(RefusalKinds.map((k) => [k, 0])),
    ...expected.get(id),
  });
  await until(
    () => [...members.values()].every((m) => JSON.stringify(counts(m)) === JSON.stringify(want(m.id))),
    "every forged message to be refused and counted",
    10_000,
  ).catch(() => {});
  for (const m of members.values()) t.deepEqual(counts(m), want(m.id), `refusals counted at ${m.id}`);
  t.regex(f1.transportLog.join("\n"), /dropped invalid message from \d: type: unknown message type 99/);
  t.regex(f1.transportLog.join("\n"), /dropped message for \d \(this is \d\)/);

  // Nothing was taken: the group is as it was, and it keeps committing.
  t.is(f1.driver.status().snapshotIndex, 0, "the forged snapshot was not installed");
  t.true(f1.driver.status().term < TERM_MAX);
  leader = await leaderOf(members);
  const after = await set("after", "2");
  await until(
    () => [...members.values()].every((m) => m.driver.appliedIndex >= after.index),
    "every member to apply the write after the forgeries",
  );
  for (const m of members.values()) {
    t.is(m.sm.get("after"), "2", `${m.id} applied the later write`);
    t.is(m.sm.get("forged"), undefined, `${m.id} applied no forged entry`);
  }
});

test("a refused membership change reaches the caller with its reason code (driver Rejected.reason)", async (t) => {
  const members = await startGroup(t);
  const leader = await leaderOf(members);
  await leader.driver.propose(encodeKvCommand({ op: "set", key: "k", value: "v" }));
  const err = await t.throwsAsync(leader.driver.promote("9"), { instanceOf: Rejected });
  t.is(err?.reason, "NOT_LEARNER");
  t.regex(err!.message, /9 is not a learner/);
});

test("a peer flooding forged messages over gRPC: each is refused and counted, the log gets the first and every 1000th", async (t) => {
  const members = await startGroup(t);
  const leader = await leaderOf(members);
  await leader.driver.propose(encodeKvCommand({ op: "set", key: "k", value: "v" }));
  const { term } = leader.driver.status();
  const [f1, f2] = [...members.values()].filter((m) => m !== leader) as [Member, Member];
  const forged = encodeMessage(msg({ type: MessageType.Heartbeat, from: f1.id, to: f2.id, term }));
  for (let i = 0; i < 4; i++)
    await sendRaw(
      f2.address,
      f1.id,
      Array.from({ length: 500 }, () => forged),
    );
  await until(() => f2.driver.status().refused.conflictingLeader === 2000, "2000 refusals counted", 20_000);
  const lines = f2.driverLog.filter((l) => l.includes("conflictingLeader"));
  t.is(lines.length, 3);
  t.regex(lines[0]!, /\(1 of this kind so far\)$/);
  t.regex(lines[1]!, /\(1000 of this kind so far\)$/);
  t.regex(lines[2]!, /\(2000 of this kind so far\)$/);
  t.is(f2.driver.status().leader, leader.id, "the follower still follows the real leader");
});
