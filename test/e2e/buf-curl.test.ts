/**
 * A generic gRPC client nobody on the project wrote, `buf curl`, talks to a
 * served peer over mTLS through server reflection: CreateKey and GetKey work
 * with an issued service certificate, and NOT_FOUND, INVALID_ARGUMENT and
 * UNAUTHENTICATED come back where they should.
 */
import test from "ava";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

import { spawnPeer, type IdentityFiles, type PeerProcess } from "../helpers/peer-process.js";

/** node_modules/.bin/buf from dist/test/e2e/. */
const BUF = fileURLToPath(new URL("../../../node_modules/.bin/buf", import.meta.url));

/** The standard grpc.health.v1 proto, as shipped with grpc-health-check. */
const HEALTH_PROTO = fileURLToPath(
  new URL("../../../node_modules/grpc-health-check/proto/health/v1/health.proto", import.meta.url),
);

let peer: PeerProcess;
let storageNode: IdentityFiles;

test.before(async () => {
  peer = await spawnPeer();
  storageNode = await peer.issueIdentity("object-server-3", "service", ["objects"]);
});

test.after.always(async () => {
  await peer?.teardown();
});

interface BufResult {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

/** buf's exit code for a failed RPC is the gRPC code shifted left by three. */
const exitCodeOf = (grpcCode: number): number => grpcCode << 3;

function bufCurl(
  method: string,
  data: object,
  tls: { ca: string; cert?: string; key?: string },
  schema?: string,
): Promise<BufResult> {
  const args = [
    "curl",
    "--protocol",
    "grpc",
    "--cacert",
    tls.ca,
    "--timeout",
    "20s",
    "--data",
    JSON.stringify(data),
  ];
  // Without --schema, buf asks the server's reflection service for the schema.
  if (schema !== undefined) args.push("--schema", schema);
  if (tls.cert !== undefined && tls.key !== undefined) args.push("--cert", tls.cert, "--key", tls.key);
  args.push(`https://${peer.address}/${method}`);
  return new Promise((resolve, reject) => {
    const child = spawn(BUF, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.on("error", reject);
    child.on("close", (exitCode) => {
      clearTimeout(timer);
      resolve({ exitCode, stdout, stderr });
    });
  });
}

/** The error code buf prints as JSON on stderr, e.g. "not_found". */
function errorCode(r: BufResult): string | undefined {
  const start = r.stderr.indexOf("{");
  if (start < 0) return undefined;
  try {
    return (JSON.parse(r.stderr.slice(start)) as { code?: string }).code;
  } catch {
    return undefined;
  }
}

test.serial("CreateKey then GetKey through reflection with an issued service certificate", async (t) => {
  const created = await bufCurl(
    "lockbox.v1.KeyService/CreateKey",
    { project: "objects", scope: "bucket-9", name: "sse", algorithm: "KEY_ALGORITHM_AES", bitLength: 256 },
    storageNode,
  );
  t.is(created.exitCode, 0, created.stderr);
  const { key } = JSON.parse(created.stdout) as {
    key: { id: string; project: string; bitLength: number; state: string };
  };
  t.like(key, { project: "objects", bitLength: 256, state: "KEY_STATE_ACTIVE" });

  const got = await bufCurl("lockbox.v1.KeyService/GetKey", { id: key.id }, storageNode);
  t.is(got.exitCode, 0, got.stderr);
  const body = JSON.parse(got.stdout) as { key: { id: string }; material: string };
  t.is(body.key.id, key.id);
  t.is(Buffer.from(body.material, "base64").length, 32);
  // The same bytes the project's own client library sees.
  const client = peer.client(storageNode, { cache: false });
  t.is((await client.getKey(key.id)).material.toString("base64"), body.material);
});

test.serial("NOT_FOUND for a random key id", async (t) => {
  const r = await bufCurl("lockbox.v1.KeyService/GetKey", { id: crypto.randomUUID() }, storageNode);
  t.is(r.exitCode, exitCodeOf(5), r.stderr);
  t.is(errorCode(r), "not_found");
});

test.serial("INVALID_ARGUMENT for a bit length of 100", async (t) => {
  const r = await bufCurl(
    "lockbox.v1.KeyService/CreateKey",
    { project: "objects", scope: "b", name: "n", algorithm: "KEY_ALGORITHM_AES", bitLength: 100 },
    storageNode,
  );
  t.is(r.exitCode, exitCodeOf(3), r.stderr);
  t.is(errorCode(r), "invalid_argument");
  t.regex(r.stderr, /bit_length/);
});

test.serial("UNAUTHENTICATED without a client certificate", async (t) => {
  const r = await bufCurl(
    "lockbox.v1.KeyService/CreateKey",
    { project: "objects", scope: "b", name: "n", algorithm: "KEY_ALGORITHM_AES", bitLength: 256 },
    { ca: storageNode.ca, cert: undefined, key: undefined },
  );
  t.is(r.exitCode, exitCodeOf(16), r.stderr);
  t.is(errorCode(r), "unauthenticated");
  // Nothing was created for the unauthenticated caller.
  const admin = peer.client(peer.admin);
  t.is((await admin.listAllKeys({ project: "objects" })).length, 1);
});

test.serial("the standard health service answers SERVING", async (t) => {
  // The health service is not one of lockbox's protos; buf gets its schema from the standard file.
  const r = await bufCurl("grpc.health.v1.Health/Check", {}, storageNode, HEALTH_PROTO);
  t.is(r.exitCode, 0, r.stderr);
  t.is((JSON.parse(r.stdout) as { status: string }).status, "SERVING");
});
