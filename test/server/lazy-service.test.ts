/**
 * Services built on their first call (lazy-service.ts), on a real grpc-js server over loopback:
 * nothing is built when the server starts, the first call builds once and is answered by the real
 * implementation, and a build that lacks a declared method fails that call, not the server.
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import test from "ava";
import { HealthImplementation, protoPath as healthProtoPath } from "grpc-health-check";

import { addLazyServices, type LazyServiceShapes } from "../../src/server/lazy-service.js";

const HEALTH: LazyServiceShapes = {
  "grpc.health.v1.Health": {
    Check: { requestStream: false, responseStream: false },
    Watch: { requestStream: false, responseStream: true },
  },
};

type HealthClient = grpc.Client &
  Record<
    string,
    (req: unknown, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void) => void
  >;

async function serve(t: import("ava").ExecutionContext, build: Parameters<typeof addLazyServices>[2]) {
  const server = new grpc.Server();
  addLazyServices(server, HEALTH, build);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  const def = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String });
  const Health = grpc.makeGenericClientConstructor(
    def["grpc.health.v1.Health"] as grpc.ServiceDefinition,
    "Health",
  );
  const client = new Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as HealthClient;
  t.teardown(() => {
    client.close();
    server.forceShutdown();
  });
  const check = (service: string): Promise<string> =>
    new Promise((resolve, reject) =>
      client.Check!({ service }, (err, res) => (err ? reject(err) : resolve(res!.status))),
    );
  return { check };
}

test("a lazy service is built on its first call, once, and answers through the real implementation", async (t) => {
  let builds = 0;
  const { check } = await serve(t, (recorder) => {
    builds++;
    new HealthImplementation({ "": "SERVING", "a.B": "NOT_SERVING" }).addToServer(recorder as grpc.Server);
  });
  t.is(builds, 0, "registering builds nothing");
  t.is(await check(""), "SERVING");
  t.is(await check("a.B"), "NOT_SERVING");
  const unknown = await t.throwsAsync<grpc.ServiceError>(check("no.such.Service"));
  t.is(unknown.code, grpc.status.NOT_FOUND);
  t.is(builds, 1);
});

test("a build without a declared method fails that call, and the server keeps answering", async (t) => {
  let builds = 0;
  const { check } = await serve(t, () => {
    builds++;
  });
  for (let i = 0; i < 2; i++) {
    const err = await t.throwsAsync<grpc.ServiceError>(check(""));
    t.not(err.code, grpc.status.OK);
  }
  t.is(builds, 1, "built once, not on every call");
});
