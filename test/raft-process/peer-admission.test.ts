import test from "ava";
import * as grpc from "@grpc/grpc-js";
import { randomBytes, X509Certificate } from "node:crypto";
import { MessageType, type Message } from "../../cluster/raft/core/types.js";
import { GrpcPeerTransport, peerGrpcOptions } from "../../src/raft/grpc-peer-transport.js";
import { loadPeerProto } from "../../src/raft/peer-proto.js";
import { encodeMessage } from "../../src/raft/raft-wire-codec.js";
import { snapshotChunks } from "../../src/raft/snapshot-chunks.js";
import { until } from "./mock-leader.js";
import { peerClientCredentials, peerServerCredentials, peerTls } from "./peer-tls.js";

const heartbeat = (from: string): Message => ({
  type: MessageType.Heartbeat,
  from,
  to: "b",
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

test("transport: a peer the control state does not admit is refused on both calls before anything it sends is read; an admitted one is heard", async (t) => {
  const seen: string[] = [];
  const b = new GrpcPeerTransport({
    id: "b",
    tls: await peerTls("b"),
    admitPeer: ({ peerId, serialNumber }) => {
      seen.push(serialNumber);
      return peerId === "a" ? null : `${peerId} is not a current member`;
    },
  });
  t.teardown(() => b.close());
  const received: Message[] = [];
  b.start((m) => received.push(m));
  const server = new grpc.Server(peerGrpcOptions());
  server.addService(loadPeerProto().PeerService.service, b.serviceHandlers());
  t.teardown(() => server.forceShutdown());
  const credentials = await peerServerCredentials("b");
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  const address = `127.0.0.1:${port}`;

  const raft = async (as: string): Promise<grpc.ServiceError | null> => {
    const client = new (loadPeerProto().PeerService)(address, await peerClientCredentials(as));
    t.teardown(() => client.close());
    return new Promise((resolve) => {
      const s = (
        client as unknown as {
          Raft(cb: (e: grpc.ServiceError | null) => void): grpc.ClientWritableStream<object>;
        }
      ).Raft(resolve);
      s.on("error", () => {});
      s.write({ from: as, messages: [encodeMessage(heartbeat(as))] });
      s.end();
    });
  };
  const snapshot = async (as: string): Promise<grpc.StatusObject> => {
    const client = new (loadPeerProto().PeerService)(address, await peerClientCredentials(as));
    t.teardown(() => client.close());
    const call = (client as unknown as { Snapshot(): grpc.ClientDuplexStream<object, object> }).Snapshot();
    call.on("data", () => {});
    call.on("error", () => {});
    const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
    const m = { ...heartbeat(as), type: MessageType.Snapshot } as Message;
    const withSnap: Message = {
      ...m,
      snapshot: {
        metadata: { index: 5, term: 1, confState: { voters: ["a", "b"], learners: [] } },
        data: randomBytes(10),
      },
    };
    for (const c of snapshotChunks(as, withSnap, 1024)) call.write(c);
    call.end();
    return status;
  };

  const refused = await raft("c");
  t.is(refused?.code, grpc.status.PERMISSION_DENIED);
  t.regex(refused?.details ?? "", /c is not a current member/);
  t.is((await snapshot("c")).code, grpc.status.PERMISSION_DENIED);
  t.is(b.counters().refusedNotAdmitted, 2);
  // The hook is told the certificate's serial, which a revocation names.
  const serialOfC = new X509Certificate((await peerTls("c")).certificatePem).serialNumber.toUpperCase();
  t.deepEqual(seen, [serialOfC, serialOfC]);
  t.deepEqual(received, [], "nothing from the refused peer reached raft");

  t.is(await raft("a"), null);
  t.is((await snapshot("a")).code, grpc.status.OK);
  await until(() => received.length === 2, "the admitted peer's heartbeat and snapshot");
  t.deepEqual(
    received.map((m) => [m.from, m.type]),
    [
      ["a", MessageType.Heartbeat],
      ["a", MessageType.Snapshot],
    ],
  );
});
