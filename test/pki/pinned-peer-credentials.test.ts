/**
 * The client credentials of every peer-to-peer channel (raft, replication, attestation), over real
 * gRPC with certificates of the real cluster CA: a server is accepted only with the certificate of
 * the peer the channel was made for; another member's certificate, though the CA issued it, is
 * refused before any call reaches that server.
 */
import * as grpc from "@grpc/grpc-js";
import test from "ava";
import { pinnedPeerCredentials } from "../../src/pki/pinned-peer-credentials.js";
import { peerTls } from "../raft-process/peer-tls.js";

const identity = (b: Buffer): Buffer => b;
const PING = {
  ping: {
    path: "/test.Ping/Ping",
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
} satisfies grpc.ServiceDefinition;
const PingClient = grpc.makeGenericClientConstructor(PING, "Ping");

/** A server with peer `id`'s certificate; counts the calls that reach it. */
async function serverOf(
  t: import("ava").ExecutionContext,
  id: string,
): Promise<{ port: number; calls: number }> {
  const tls = await peerTls(id);
  const server = new grpc.Server();
  const state = { port: 0, calls: 0 };
  server.addService(PING, {
    ping: (_call: unknown, done: grpc.sendUnaryData<Buffer>) => {
      state.calls++;
      done(null, Buffer.from("pong"));
    },
  });
  const credentials = grpc.ServerCredentials.createSsl(
    Buffer.from(tls.caCertificatePem),
    [{ cert_chain: Buffer.from(tls.certificatePem), private_key: Buffer.from(tls.privateKeyPem) }],
    true,
  );
  state.port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", credentials, (err, port) => (err ? reject(err) : resolve(port))),
  );
  t.teardown(() => server.forceShutdown());
  return state;
}

async function ping(t: import("ava").ExecutionContext, port: number, pinnedTo: string): Promise<Buffer> {
  const client = new PingClient(`127.0.0.1:${port}`, pinnedPeerCredentials(await peerTls("a"), pinnedTo), {
    "grpc.ssl_target_name_override": "localhost",
    "grpc.default_authority": "localhost",
  });
  t.teardown(() => client.close());
  const call = client as unknown as {
    ping(req: Buffer, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Buffer) => void): void;
  };
  return new Promise((resolve, reject) =>
    call.ping(Buffer.from("ping"), { deadline: Date.now() + 5_000 }, (e, r) => (e ? reject(e) : resolve(r!))),
  );
}

test("a channel pinned to peer b reaches the server holding b's certificate", async (t) => {
  const b = await serverOf(t, "b");
  t.is((await ping(t, b.port, "b")).toString(), "pong");
  t.is(b.calls, 1);
});

test("a channel pinned to peer c refuses the server holding b's certificate (same CA), naming both, and no call reaches it", async (t) => {
  const b = await serverOf(t, "b");
  const e = await t.throwsAsync<grpc.ServiceError>(ping(t, b.port, "c"));
  t.is(e?.code, grpc.status.UNAVAILABLE);
  t.regex(e?.details ?? "", /is peer b, not c/);
  t.is(b.calls, 0);
});
