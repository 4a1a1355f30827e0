/**
 * OpenStack uses lockbox unchanged (issue 11 acceptance): a real lockbox peer serving the Barbican
 * v1 API over TLS, a real Keystone (Debian's keystone under uWSGI), both on 127.0.0.1, and the
 * real clients under Debian's /usr/bin/python3: python-barbicanclient's `barbican` CLI and
 * Castellan's Barbican backend, as Nova and Cinder use them. Nothing is mocked.
 *
 * Tokens live TOKEN_SECONDS, so one test can watch a token expire; every client logs in afresh.
 */
import test from "ava";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent } from "node:https";

import { type Keystone, type KeystoneUser, startKeystone } from "../helpers/keystone.js";
import { spawnPeer, type PeerProcess } from "../helpers/peer-process.js";
import { restCall, type RestAnswer } from "../helpers/rest-call.js";

const TOKEN_SECONDS = 40;
const CACHE_SECONDS = 2;
const PYTHON = "/usr/bin/python3";
const CASTELLAN_CLIENT = fileURLToPath(new URL("../../../test/rest/castellan-client.py", import.meta.url));

let keystone: Keystone;
let peer: PeerProcess;
let rest: string;
let ca: string;
let alice: KeystoneUser; // project-a
let bob: KeystoneUser; // project-b
let agent: Agent;
/** A token of alice's taken at the start, used once, left to expire (see the expiry test). */
let earlyToken: { token: string; issuedAt: number };

test.before(async () => {
  keystone = await startKeystone({ tokenSeconds: TOKEN_SECONDS });
  const service = await keystone.user("lockbox", "service", "admin");
  alice = await keystone.user("alice", "project-a");
  bob = await keystone.user("bob", "project-b");
  peer = await spawnPeer({
    editConfig: async (config, dir) => {
      await fs.writeFile(join(dir, "keystone-password"), service.password, { mode: 0o600 });
      config.rest = {
        listen: "127.0.0.1:0",
        mtls: true,
        keystone: {
          url: keystone.url,
          serviceUser: "lockbox",
          servicePasswordFile: "keystone-password",
          serviceProject: "service",
          cacheSeconds: CACHE_SECONDS,
        },
      };
    },
  });
  rest = `https://${peer.restAddress!}`;
  ca = join(peer.dir, "ca.crt");
  agent = new Agent({ ca: await fs.readFile(ca, "utf8"), keepAlive: true });
  await keystone.registerKeyManager(rest);
  earlyToken = { token: await keystone.token(alice), issuedAt: Date.now() };
  const r = await call("GET", "/v1/secrets", { token: earlyToken.token });
  if (r.status !== 200) throw new Error(`first call with a fresh token: ${r.status} ${r.text}`);
});

test.after.always(async () => {
  agent?.destroy();
  await peer?.teardown();
  await keystone?.stop();
});

function call(
  method: string,
  path: string,
  opts: { token?: string; headers?: Record<string, string>; json?: unknown } = {},
): Promise<RestAnswer> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.token !== undefined) headers["X-Auth-Token"] = opts.token;
  return restCall(`${rest}${path}`, {
    method,
    headers,
    agent,
    ...(opts.json !== undefined ? { json: opts.json } : {}),
  });
}

function barbican(
  user: KeystoneUser,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = {
    PATH: "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/tmp",
    OS_AUTH_URL: keystone.url,
    OS_IDENTITY_API_VERSION: "3",
    OS_USERNAME: user.name,
    OS_PASSWORD: user.password,
    OS_PROJECT_NAME: user.project,
    OS_USER_DOMAIN_NAME: "Default",
    OS_PROJECT_DOMAIN_NAME: "Default",
    OS_REGION_NAME: "RegionOne",
  };
  return new Promise((resolve) => {
    execFile(
      "/usr/bin/barbican",
      ["--os-cacert", ca, ...args],
      { env, timeout: 60_000 },
      (err, stdout, stderr) =>
        resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : -1, stdout, stderr }),
    );
  });
}

interface StepResult {
  op: string;
  id?: string;
  ids?: string[];
  hex?: string;
  type?: string;
  name?: string | null;
  error?: string | null;
  requests: number;
  seconds?: number;
}

async function castellan(spec: {
  apiVersion: "v1" | null;
  credential: Record<string, string>;
  steps: Record<string, unknown>[];
}): Promise<StepResult[]> {
  const doc = JSON.stringify({
    endpoint: rest,
    ca,
    auth_url: keystone.url,
    api_version: spec.apiVersion,
    credential: spec.credential,
    steps: spec.steps,
  });
  return new Promise((resolve, reject) => {
    execFile(
      PYTHON,
      [CASTELLAN_CLIENT, doc],
      { timeout: 120_000, env: { PATH: "/usr/bin:/bin" } },
      (err, stdout, stderr) => {
        if (err !== null) return reject(new Error(`castellan client failed: ${stderr.slice(-3000)}`));
        const last = stdout.trim().split("\n").pop() ?? "";
        resolve((JSON.parse(last) as { results: StepResult[] }).results);
      },
    );
  });
}

const password = (u: KeystoneUser) => ({
  kind: "password",
  user: u.name,
  password: u.password,
  project: u.project,
});

test.serial(
  "barbican CLI with Keystone password auth: secret store (binary payload from a file); secret get --payload is 406 for binary material (as in Barbican); secret get --file round-trips the exact bytes",
  async (t) => {
    const dir = await fs.mkdtemp(join(peer.dir, "cli-"));
    const payload = randomBytes(200);
    payload[0] = 0xff; // not UTF-8
    await fs.writeFile(join(dir, "in.bin"), payload);

    const stored = await barbican(alice, [
      "secret",
      "store",
      "--name",
      "cli-secret",
      "--file",
      join(dir, "in.bin"),
      "-f",
      "json",
    ]);
    t.is(stored.code, 0, stored.stderr);
    const ref = (JSON.parse(stored.stdout) as Record<string, string>)["Secret href"]!;
    t.true(ref.startsWith(`${rest}/v1/secrets/`));

    // The CLI asks for text/plain unless told otherwise; binary material is 406 as text, as in Barbican.
    const asText = await barbican(alice, ["secret", "get", ref, "--payload"]);
    t.not(asText.code, 0);
    t.regex(asText.stderr, /Not Acceptable/);
    const got = await barbican(alice, [
      "secret",
      "get",
      ref,
      "--file",
      join(dir, "out.bin"),
      "-t",
      "application/octet-stream",
    ]);
    t.is(got.code, 0, got.stderr);
    t.deepEqual(await fs.readFile(join(dir, "out.bin")), payload);
    cli = { ref, dir };
  },
);

// The CLI takes seconds per command on a loaded machine: its round trips are split over several
// tests (each well within ava's timeout), sharing the secret the first one stored.
let cli = { ref: "", dir: "" };

test.serial("barbican CLI: secret get shows the metadata, secret list --name finds exactly it", async (t) => {
  const { ref } = cli;
  t.not(ref, "");
  const shown = await barbican(alice, ["secret", "get", ref, "-f", "json"]);
  t.is(shown.code, 0, shown.stderr);
  t.like(JSON.parse(shown.stdout), { Name: "cli-secret", "Secret type": "opaque", Status: "ACTIVE" });

  const listed = await barbican(alice, ["secret", "list", "--name", "cli-secret", "-f", "json"]);
  t.is(listed.code, 0, listed.stderr);
  t.deepEqual(
    (JSON.parse(listed.stdout) as Record<string, string>[]).map((s) => s["Secret href"]),
    [ref],
  );
});

test.serial("barbican CLI: secret delete, then secret get is Not Found", async (t) => {
  const { ref } = cli;
  t.not(ref, "");
  const deleted = await barbican(alice, ["secret", "delete", ref]);
  t.is(deleted.code, 0, deleted.stderr);
  const gone = await barbican(alice, ["secret", "get", ref]);
  t.not(gone.code, 0);
  t.regex(gone.stderr, /Not Found/);
});

test.serial(
  "barbican CLI: secret order create key, order get is ACTIVE with a secret of 32 bytes",
  async (t) => {
    const dir = await fs.mkdtemp(join(peer.dir, "cli-order-"));
    const ordered = await barbican(alice, [
      "secret",
      "order",
      "create",
      "key",
      "--algorithm",
      "aes",
      "--bit-length",
      "256",
      "--name",
      "cli-order",
      "-f",
      "json",
    ]);
    t.is(ordered.code, 0, ordered.stderr);
    const orderRef = (JSON.parse(ordered.stdout) as Record<string, string>)["Order href"]!;
    const order = await barbican(alice, ["secret", "order", "get", orderRef, "-f", "json"]);
    t.is(order.code, 0, order.stderr);
    const o = JSON.parse(order.stdout) as Record<string, string>;
    t.is(o.Status, "ACTIVE");
    const keyRef = o["Secret href"]!;
    const keyFile = join(dir, "order.key");
    const keyGot = await barbican(alice, [
      "secret",
      "get",
      keyRef,
      "--file",
      keyFile,
      "-t",
      "application/octet-stream",
    ]);
    t.is(keyGot.code, 0, keyGot.stderr);
    t.is((await fs.readFile(keyFile)).length, 32);
  },
);

for (const apiVersion of ["v1", null] as const) {
  for (const kind of ["password", "token"] as const) {
    test.serial(
      `Castellan (${apiVersion ?? "version discovery"}, Keystone${kind === "password" ? "Password" : "Token"}): create_key 256 and 512, store symmetric and passphrase, get, list, delete, missing id`,
      async (t) => {
        // A project of its own: Castellan's list shows the first 10 secrets (Barbican's default page).
        const name = `castellan-${apiVersion ?? "discovery"}-${kind}`;
        const user = await keystone.user(name, name);
        const credential =
          kind === "password"
            ? password(user)
            : { kind: "token", token: await keystone.token(user), project_id: user.projectId };
        const symmetric = randomBytes(32).toString("hex");
        const first = await castellan({
          apiVersion,
          credential,
          steps: [
            { op: "create_key", length: 256 },
            { op: "create_key", length: 512 },
            { op: "store_symmetric", hex: symmetric },
            { op: "store_passphrase", text: "vtpm-passphrase-äöü" },
          ],
        });
        const [k256, k512, sym, pass] = first.map((r) => r.id!);
        const second = await castellan({
          apiVersion,
          credential: kind === "password" ? credential : { ...credential, token: await keystone.token(user) },
          steps: [
            { op: "get", id: k256 },
            { op: "get", id: k512 },
            { op: "get", id: sym },
            { op: "get", id: pass },
            { op: "list" },
            { op: "delete", id: sym },
            { op: "get_missing", id: sym },
            { op: "get_missing", id: "00000000-0000-4000-8000-000000000000" },
          ],
        });
        const [g256, g512, gSym, gPass, list, , missing, unknown] = second;
        t.is(g256!.hex!.length, 64);
        t.is(g256!.type, "SymmetricKey");
        t.is(g512!.hex!.length, 128);
        t.is(gSym!.hex, symmetric);
        t.is(gPass!.type, "Passphrase");
        t.is(Buffer.from(gPass!.hex!, "hex").toString("utf8"), "vtpm-passphrase-äöü");
        t.deepEqual(list!.ids, [k256, k512, sym, pass].sort());
        t.is(missing!.error, "ManagedObjectNotFoundError");
        t.is(unknown!.error, "ManagedObjectNotFoundError");
        // A get after the first: one metadata read and one payload read, not fifteen.
        t.is(gSym!.requests, 2);
      },
    );
  }
}

test.serial(
  "consumers (microversion 1.1): add, shown on the secret, delete refused while present, remove, then delete",
  async (t) => {
    const token = await keystone.token(alice);
    const v11 = { "OpenStack-API-Version": "key-manager 1.1" };
    const created = await call("POST", "/v1/orders/", {
      token,
      json: { type: "key", meta: { algorithm: "aes", bit_length: 256 } },
    });
    t.is(created.status, 202, created.text);
    const order = await call("GET", new URL(created.json!.order_ref as string).pathname, { token });
    const secretPath = new URL(order.json!.secret_ref as string).pathname;
    const consumer = { service: "cinder", resource_type: "volume", resource_id: "vol-1" };
    const added = await call("POST", `${secretPath}/consumers`, { token, headers: v11, json: consumer });
    t.is(added.status, 200, added.text);
    t.deepEqual(added.json!.consumers, [consumer]);
    const meta = await call("GET", secretPath, { token, headers: v11 });
    t.deepEqual(meta.json!.consumers, [consumer]);
    const plain = await call("GET", secretPath, { token });
    t.false("consumers" in plain.json!);
    const refused = await call("DELETE", secretPath, { token });
    t.is(refused.status, 409);
    t.like(refused.json, { code: 409, title: "Conflict" });
    const removed = await call("DELETE", `${secretPath}/consumers/`, { token, headers: v11, json: consumer });
    t.is(removed.status, 200, removed.text);
    t.deepEqual(removed.json!.consumers, []);
    t.is((await call("DELETE", secretPath, { token })).status, 204);
    t.is((await call("DELETE", secretPath, { token })).status, 404);
  },
);

test.serial(
  "isolation: a user of project B cannot read, list, delete or add consumers to project A's secrets (404, empty lists)",
  async (t) => {
    const a = await keystone.token(alice);
    const b = await keystone.token(bob);
    const stored = await call("POST", "/v1/secrets/", {
      token: a,
      json: {
        payload: randomBytes(32).toString("base64"),
        payload_content_type: "application/octet-stream",
        payload_content_encoding: "base64",
        secret_type: "symmetric",
        algorithm: "aes",
      },
    });
    t.is(stored.status, 201, stored.text);
    const path = new URL(stored.json!.secret_ref as string).pathname;
    const orderA = await call("POST", "/v1/orders", {
      token: a,
      json: { type: "key", meta: { algorithm: "aes", bit_length: 128 } },
    });
    const orderPath = new URL(orderA.json!.order_ref as string).pathname;

    for (const [method, p, json] of [
      ["GET", path, undefined],
      ["GET", `${path}/payload`, undefined],
      ["DELETE", path, undefined],
      ["POST", `${path}/consumers`, { service: "nova", resource_type: "instance", resource_id: "i-1" }],
      ["GET", orderPath, undefined],
      ["DELETE", orderPath, undefined],
    ] as const) {
      const r = await call(method, p, { token: b, ...(json !== undefined ? { json } : {}) });
      t.is(r.status, 404, `${method} ${p}: ${r.text}`);
      t.like(r.json, { code: 404, title: "Not Found" });
    }
    const listB = await call("GET", "/v1/secrets", { token: b });
    t.deepEqual(listB.json, { secrets: [], total: 0 });
    const ordersB = await call("GET", "/v1/orders", { token: b });
    t.deepEqual(ordersB.json, { orders: [], total: 0 });
    // Still there for its owner.
    t.is((await call("GET", `${path}/payload`, { token: a })).status, 200);
  },
);

test.serial(
  "a revoked token is 401 once the token cache's time has passed; garbage tokens and a bare X-Project-Id are 401",
  async (t) => {
    const token = await keystone.token(alice);
    t.is((await call("GET", "/v1/secrets", { token })).status, 200);
    await keystone.revoke(token);
    await new Promise((r) => setTimeout(r, CACHE_SECONDS * 1000 + 500));
    const revoked = await call("GET", "/v1/secrets", { token });
    t.is(revoked.status, 401);
    t.like(revoked.json, { code: 401, title: "Unauthorized" });
    t.regex(String(revoked.headers["www-authenticate"] ?? ""), /^Keystone uri="http:\/\/127\.0\.0\.1:\d+"/);
    t.is((await call("GET", "/v1/secrets", { token: "gAAAAAB-not-a-token" })).status, 401);
    const bare = await call("GET", "/v1/secrets", { headers: { "X-Project-Id": alice.projectId } });
    t.is(bare.status, 401);
    const bareWrite = await call("POST", "/v1/secrets/", {
      headers: { "X-Project-Id": alice.projectId },
      json: {
        payload: "AAAA",
        payload_content_type: "application/octet-stream",
        payload_content_encoding: "base64",
      },
    });
    t.is(bareWrite.status, 401);
  },
);

test.serial("an expired token is 401", async (t) => {
  const wait = earlyToken.issuedAt + TOKEN_SECONDS * 1000 + 1500 - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const r = await call("GET", "/v1/secrets", { token: earlyToken.token });
  t.is(r.status, 401);
});

/** Cheap key slots: the default argon2 slot would take seconds and a GiB of memory per call. */
const PBKDF = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];

function cryptsetup(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile("cryptsetup", args, { timeout: 60_000 }, (err, _stdout, stderr) => {
      if (err !== null && (err as NodeJS.ErrnoException).code === "ENOENT")
        return reject(new Error("cryptsetup is not installed: run scripts/install-deps.sh (cryptsetup-bin)"));
      resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : -1, stderr });
    });
  });
}

test.serial(
  "Cinder's volume rekey, key part through Castellan: create_key(512), clone it with store(get()) (same bytes, new id), and fresh material for the clone (create_key)",
  async (t) => {
    const credential = password(alice);
    const [volumeKey] = await castellan({
      apiVersion: "v1",
      credential,
      steps: [{ op: "create_key", length: 512 }],
    });
    const [original, cloned, fresh] = await castellan({
      apiVersion: "v1",
      credential,
      steps: [
        { op: "get", id: volumeKey!.id },
        { op: "clone", id: volumeKey!.id },
        { op: "create_key", length: 512 },
      ],
    });
    const [clonedGot, freshGot] = await castellan({
      apiVersion: "v1",
      credential,
      steps: [
        { op: "get", id: cloned!.id },
        { op: "get", id: fresh!.id },
      ],
    });
    t.is(original!.hex!.length, 128);
    t.is(clonedGot!.hex, original!.hex);
    t.not(cloned!.id, volumeKey!.id);
    t.not(freshGot!.hex, original!.hex);
    luks = {
      original: original!.hex!,
      cloned: clonedGot!.hex!,
      fresh: freshGot!.hex!,
      clonedId: cloned!.id!,
    };
  },
);

let luks = { original: "", cloned: "", fresh: "", clonedId: "" };

test.serial(
  "Cinder's volume rekey, LUKS part: the image formatted with the key, its clone re-keyed with luksChangeKey to the fresh key, opens with the fresh key only; the clone's old key is deleted",
  async (t) => {
    t.not(luks.original, "");
    const credential = password(alice);
    const work = await fs.mkdtemp(join(peer.dir, "luks-"));
    const original = { hex: luks.original };
    const clonedGot = { hex: luks.cloned };
    const freshGot = { hex: luks.fresh };
    const cloned = { id: luks.clonedId };

    const [keyFile, cloneKeyFile, freshKeyFile, image, cloneImage] = [
      "v.key",
      "c.key",
      "f.key",
      "v.img",
      "c.img",
    ].map((f) => join(work, f)) as [string, string, string, string, string];
    await fs.writeFile(keyFile, Buffer.from(original!.hex!, "hex"), { mode: 0o600 });
    await fs.writeFile(cloneKeyFile, Buffer.from(clonedGot!.hex!, "hex"), { mode: 0o600 });
    await fs.writeFile(freshKeyFile, Buffer.from(freshGot!.hex!, "hex"), { mode: 0o600 });
    await fs.writeFile(image, "");
    await fs.truncate(image, 20 * 1024 * 1024);
    const format = await cryptsetup([
      "luksFormat",
      "--type",
      "luks2",
      "--batch-mode",
      ...PBKDF,
      image,
      keyFile,
    ]);
    t.is(format.code, 0, format.stderr);
    await fs.copyFile(image, cloneImage);
    const opens = async (img: string, key: string) =>
      (await cryptsetup(["open", "--test-passphrase", "--key-file", key, img])).code;
    t.is(await opens(cloneImage, cloneKeyFile), 0);
    const change = await cryptsetup([
      "luksChangeKey",
      "--batch-mode",
      ...PBKDF,
      cloneImage,
      "--key-file",
      cloneKeyFile,
      freshKeyFile,
    ]);
    t.is(change.code, 0, change.stderr);
    t.is(await opens(cloneImage, freshKeyFile), 0);
    t.not(await opens(cloneImage, cloneKeyFile), 0);
    t.is(await opens(image, keyFile), 0);
    // Cinder then drops the clone's copy of the old key.
    const [deleted, missing] = await castellan({
      apiVersion: "v1",
      credential,
      steps: [
        { op: "delete", id: cloned!.id },
        { op: "get_missing", id: cloned!.id },
      ],
    });
    t.is(deleted!.op, "delete");
    t.is(missing!.error, "ManagedObjectNotFoundError");
  },
);
