import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import test from "ava";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { protoPath as healthProtoPath } from "grpc-health-check";
import { type PeerFixture, startSharedPeer, startTestPeer } from "./peer-fixture.js";

const BUF = fileURLToPath(new URL("../../../node_modules/.bin/buf", import.meta.url));

let f: PeerFixture;
let closePeer: () => Promise<void> = async () => {};
test.before(async () => {
  const shared = await startSharedPeer();
  f = shared;
  closePeer = () => shared.close();
});
test.after.always(() => closePeer());

/** Runs buf (a client nobody on the project wrote); resolves with exit code and output. */
function buf(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(BUF, args, { timeout: 20_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

test("reflection lets buf curl list and call lockbox.v1.KeyService", async (t) => {
  const tls = ["--protocol", "grpc", "--cacert", join(f.dir, "ca.crt")];
  const mtls = [...tls, "--cert", join(f.dir, "admin.crt"), "--key", join(f.dir, "admin.key")];
  const url = `https://localhost:${f.peer.port}`;

  const list = await buf(["curl", ...tls, "--list-services", url]);
  t.is(list.code, 0, list.stderr);
  t.deepEqual(list.stdout.trim().split("\n").sort(), ["lockbox.v1.AdminService", "lockbox.v1.KeyService"]);

  const created = await buf([
    "curl",
    ...mtls,
    "--data",
    JSON.stringify({ project: "p1", scope: "s", name: "n", algorithm: "KEY_ALGORITHM_AES", bit_length: 128 }),
    `${url}/lockbox.v1.KeyService/CreateKey`,
  ]);
  t.is(created.code, 0, created.stderr);
  const key = (JSON.parse(created.stdout) as { key: { id: string; bitLength: number; state: string } }).key;
  t.is(key.bitLength, 128);
  t.is(key.state, "KEY_STATE_ACTIVE");

  // Through reflection too: no client certificate is a clean UNAUTHENTICATED
  // (buf exits with 8 x the gRPC code: 16 x 8 = 128).
  const anonymous = await buf([
    "curl",
    ...tls,
    "--data",
    JSON.stringify({ id: key.id }),
    `${url}/lockbox.v1.KeyService/GetKey`,
  ]);
  t.is(anonymous.code, grpc.status.UNAUTHENTICATED * 8, anonymous.stderr);
  t.regex(anonymous.stderr, /unauthenticated/);
});

test("grpc.health.v1 reports SERVING for the peer and its services", async (t) => {
  const def = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String });
  const Health = grpc.makeGenericClientConstructor(
    def["grpc.health.v1.Health"] as grpc.ServiceDefinition,
    "Health",
  );
  // Health is open to any TLS client (like a load balancer probe): no client certificate here.
  const client = new Health(f.peer.address, grpc.credentials.createSsl(Buffer.from(f.ca.certificatePem)), {
    "grpc.ssl_target_name_override": "localhost",
  }) as grpc.Client &
    Record<string, (req: unknown, cb: (err: Error | null, res?: { status: string }) => void) => void>;
  t.teardown(() => client.close());
  const check = (service: string): Promise<string> =>
    new Promise((resolve, reject) =>
      client.Check!({ service }, (err, res) => (err ? reject(err) : resolve(res!.status))),
    );
  t.is(await check(""), "SERVING");
  t.is(await check("lockbox.v1.KeyService"), "SERVING");
  t.is(await check("lockbox.v1.AdminService"), "SERVING");
  const unknown = await t.throwsAsync(check("no.such.Service"));
  t.is((unknown as grpc.ServiceError).code, grpc.status.NOT_FOUND);
});

test("grpc.health.v1 Watch streams SERVING, then NOT_SERVING once the peer starts closing", async (t) => {
  const own = await startTestPeer(t);
  const def = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String });
  const Health = grpc.makeGenericClientConstructor(
    def["grpc.health.v1.Health"] as grpc.ServiceDefinition,
    "Health",
  );
  const client = new Health(
    own.peer.address,
    grpc.credentials.createSsl(Buffer.from(own.ca.certificatePem)),
    {
      "grpc.ssl_target_name_override": "localhost",
    },
  ) as grpc.Client & Record<string, (req: unknown) => grpc.ClientReadableStream<{ status: string }>>;
  t.teardown(() => client.close());
  const statuses: string[] = [];
  const stream = client.Watch!({ service: "" });
  stream.on("data", (m: { status: string }) => statuses.push(m.status));
  stream.on("error", () => {}); // cancelled, or cut when the peer closes
  const seen = async (n: number): Promise<void> => {
    for (let i = 0; i < 200 && statuses.length < n; i++) await new Promise((r) => setTimeout(r, 50));
  };
  await seen(1);
  t.deepEqual(statuses, ["SERVING"]);
  const closing = own.peer.close(2_000);
  await seen(2);
  t.deepEqual(statuses, ["SERVING", "NOT_SERVING"]);
  stream.cancel();
  await closing;
});
