/**
 * The README's flow through the real CLI against a real served peer:
 * every `lockbox key` subcommand, status and audit, errors and --help.
 */
import test from "ava";
import { promises as fs } from "node:fs";
import { join } from "node:path";

import { runCli, runCliJson } from "../helpers/cli-process.js";
import { spawnPeer, type PeerProcess } from "../helpers/peer-process.js";

let peer: PeerProcess;

test.before(async () => {
  peer = await spawnPeer();
});

test.after.always(async () => {
  await peer?.teardown();
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Key ids: RFC 9562 version 8 (placement in the first 32 bits). */
const KEY_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

interface KeyJson {
  id: string;
  project: string;
  scope: string;
  name: string;
  secretType: string;
  algorithm: string;
  bitLength: number;
  state: string;
  parentId?: string;
  createdAt?: string;
  updatedAt?: string;
  expiresAt?: string;
}

test("key create then key get through the CLI, with --dir as the only connection flag", async (t) => {
  // What the README shows: the init directory is enough to find the CA and the admin identity.
  const flags = ["--dir", peer.dir, "--endpoint", peer.address];
  const created = await runCliJson<KeyJson>([
    "key",
    "create",
    "--project",
    "vol",
    "--scope",
    "volume-1",
    "--name",
    "root",
    "--bits",
    "256",
    "--json",
    ...flags,
  ]);
  t.regex(created.id, KEY_ID);
  t.like(created, {
    project: "vol",
    scope: "volume-1",
    name: "root",
    algorithm: "KEY_ALGORITHM_AES",
    bitLength: 256,
    state: "KEY_STATE_ACTIVE",
  });

  const hex = await runCli(["key", "get", created.id, ...flags]);
  t.is(hex.code, 0, hex.stderr);
  t.regex(hex.text, /^[0-9a-f]{64}\n$/);

  const b64 = await runCli(["key", "get", created.id, "--format", "base64", ...flags]);
  t.is(Buffer.from(b64.text.trim(), "base64").toString("hex"), hex.text.trim());

  const raw = await runCli(["key", "get", created.id, "--format", "raw", ...flags]);
  t.is(raw.stdout.toString("hex"), hex.text.trim());

  const out = join(peer.dir, "..", `${created.id}.key`);
  const toFile = await runCli(["key", "get", created.id, "--format", "raw", "--out", out, ...flags]);
  t.is(toFile.code, 0, toFile.stderr);
  t.teardown(() => fs.rm(out, { force: true }));
  t.is((await fs.readFile(out)).toString("hex"), hex.text.trim());
  t.is((await fs.stat(out)).mode & 0o777, 0o600);
  // An existing file is not replaced unless --force says so.
  await fs.writeFile(out, "keep me");
  const again = await runCli(["key", "get", created.id, "--format", "raw", "--out", out, ...flags]);
  t.is(again.code, 2);
  t.regex(again.stderr, /exists.*--force/);
  t.is(await fs.readFile(out, "utf8"), "keep me");
  const forced = await runCli([
    "key",
    "get",
    created.id,
    "--format",
    "raw",
    "--out",
    out,
    "--force",
    ...flags,
  ]);
  t.is(forced.code, 0, forced.stderr);
  t.is((await fs.readFile(out)).toString("hex"), hex.text.trim());

  // --field prints one field bare: what a script needs instead of parsing JSON.
  const id = await runCli(["key", "meta", created.id, "--field", "id", ...flags]);
  t.is(id.text, `${created.id}\n`);
  const state = await runCli(["key", "meta", created.id, "--field", "state", ...flags]);
  t.is(state.text, "KEY_STATE_ACTIVE\n");
  const bits = await runCli(["key", "meta", created.id, "-f", "bitLength", ...flags]);
  t.is(bits.text, "256\n");
  const noField = await runCli(["key", "meta", created.id, "--field", "colour", ...flags]);
  t.is(noField.code, 2);
  t.regex(noField.stderr, /no such field.*bitLength/);

  const json = await runCliJson<{ key: KeyJson; material: string }>([
    "key",
    "get",
    created.id,
    "--json",
    ...flags,
  ]);
  t.is(json.material, hex.text.trim());
  t.is(json.key.id, created.id);
});

test("import, meta, list, clone, rekey-clone, delete: each subcommand does what it says", async (t) => {
  const flags = peer.cliFlags();
  const material = "000102030405060708090a0b0c0d0e0f";
  const imported = await runCliJson<KeyJson>([
    "key",
    "import",
    "--project",
    "img",
    "--scope",
    "s1",
    "--name",
    "imported-hex",
    "--material-hex",
    material,
    "--json",
    ...flags,
  ]);
  t.like(imported, { project: "img", scope: "s1", bitLength: 128 });
  t.is((await runCli(["key", "get", imported.id, ...flags])).text.trim(), material);

  const file = join(peer.dir, "..", `import-${imported.id}.bin`);
  await fs.writeFile(file, Buffer.alloc(32, 0xab), { mode: 0o600 });
  t.teardown(() => fs.rm(file, { force: true }));
  const fromFile = await runCliJson<KeyJson>([
    "key",
    "import",
    "--project",
    "img",
    "--scope",
    "s2",
    "--name",
    "imported-file",
    "--material-file",
    file,
    "--json",
    ...flags,
  ]);
  t.is(fromFile.bitLength, 256);

  const meta = await runCliJson<KeyJson>(["key", "meta", imported.id, "--json", ...flags]);
  t.deepEqual(meta, imported);

  const clone = await runCliJson<KeyJson>([
    "key",
    "clone",
    imported.id,
    "--name",
    "snap",
    "--json",
    ...flags,
  ]);
  t.like(clone, { parentId: imported.id, scope: "s1", name: "snap", bitLength: 128 });
  t.not(clone.id, imported.id);
  t.is((await runCli(["key", "get", clone.id, ...flags])).text.trim(), material);

  const rekeyed = await runCliJson<KeyJson>(["key", "rekey-clone", imported.id, "--json", ...flags]);
  t.like(rekeyed, { parentId: imported.id, scope: "s1" });
  t.not((await runCli(["key", "get", rekeyed.id, ...flags])).text.trim(), material);

  const scoped = await runCliJson<{ keys: KeyJson[]; nextPageToken: string }>([
    "key",
    "list",
    "--project",
    "img",
    "--scope",
    "s1",
    "--all",
    "--json",
    ...flags,
  ]);
  t.deepEqual(scoped.keys.map((k) => k.id).sort(), [imported.id, clone.id, rekeyed.id].sort());
  const paged = await runCliJson<{ keys: KeyJson[]; nextPageToken: string }>([
    "key",
    "list",
    "--project",
    "img",
    "--page-size",
    "2",
    "--json",
    ...flags,
  ]);
  t.is(paged.keys.length, 2);
  t.not(paged.nextPageToken, "");
  const rest = await runCliJson<{ keys: KeyJson[]; nextPageToken: string }>([
    "key",
    "list",
    "--project",
    "img",
    "--page-size",
    "2",
    "--page-token",
    paged.nextPageToken,
    "--json",
    ...flags,
  ]);
  t.deepEqual(
    [...paged.keys, ...rest.keys].map((k) => k.id).sort(),
    [imported.id, fromFile.id, clone.id, rekeyed.id].sort(),
  );

  // Without a terminal to ask on, delete refuses unless --yes, and the key stays.
  const unconfirmed = await runCli(["key", "delete", clone.id, ...flags]);
  t.is(unconfirmed.code, 2);
  t.regex(unconfirmed.stderr, /--yes/);
  t.is((await runCli(["key", "meta", clone.id, "--field", "state", ...flags])).text, "KEY_STATE_ACTIVE\n");
  const table = await runCli(["key", "list", "--project", "img", "--scope", "s1", ...flags]);
  const rows = table.text.trimEnd().split("\n");
  t.regex(rows[0]!, /^ID +PROJECT +SCOPE +NAME +KIND +STATE +CREATED/);
  t.is(rows.length, 4, table.text);
  t.true(
    rows.slice(1).every((r) => r.indexOf("img") === rows[0]!.indexOf("PROJECT")),
    table.text,
  );
  const deleted = await runCliJson<KeyJson>(["key", "delete", clone.id, "--yes", "--json", ...flags]);
  t.is(deleted.state, "KEY_STATE_DESTROYED");
  const afterDelete = await runCli(["key", "get", clone.id, ...flags]);
  t.not(afterDelete.code, 0);
  t.is(afterDelete.stdout.length, 0);
  // The parent keeps its material after its clone is destroyed.
  t.is((await runCli(["key", "get", imported.id, ...flags])).text.trim(), material);
});

test("512-bit keys, passphrase secrets, expiration, request ids, consumers and delete --force through the CLI", async (t) => {
  const flags = peer.cliFlags();
  const create = (...extra: string[]) =>
    runCliJson<KeyJson>([
      "key",
      "create",
      "--project",
      "xts",
      "--scope",
      "vol-5",
      "--name",
      "root",
      ...extra,
      "--json",
      ...flags,
    ]);
  const xts = await create("--bits", "512", "--expires-in", "90d", "--request-id", "create-vol-5");
  t.like(xts, {
    secretType: "SECRET_TYPE_SYMMETRIC",
    algorithm: "KEY_ALGORITHM_AES",
    bitLength: 512,
    state: "KEY_STATE_ACTIVE",
  });
  t.is(xts.updatedAt, xts.createdAt);
  const expires = Date.parse(xts.expiresAt!) - Date.parse(xts.createdAt!);
  t.true(Math.abs(expires - 90 * 86_400_000) < 60_000, `expires ${expires} ms after creation`);
  t.regex((await runCli(["key", "get", xts.id, ...flags])).text, /^[0-9a-f]{128}\n$/);
  // The same request id again is the same key (a retry), not a second one.
  t.deepEqual(
    await create("--bits", "512", "--expires-at", xts.expiresAt!, "--request-id", "create-vol-5"),
    xts,
  );
  const clash = await runCli([
    "key",
    "create",
    "--project",
    "xts",
    "--scope",
    "vol-5",
    "--name",
    "other",
    "--request-id",
    "create-vol-5",
    ...flags,
  ]);
  t.is(clash.code, 2);
  t.regex(clash.stderr, /INVALID_ARGUMENT.*client_request_id/);

  const file = join(peer.dir, "..", "vtpm-passphrase.txt");
  await fs.writeFile(file, "a vTPM passphrase", { mode: 0o600 });
  t.teardown(() => fs.rm(file, { force: true }));
  const secret = await runCliJson<KeyJson>([
    "key",
    "import",
    "--project",
    "xts",
    "--scope",
    "instance-3",
    "--name",
    "vtpm",
    "--type",
    "passphrase",
    "--material-file",
    file,
    "--json",
    ...flags,
  ]);
  t.like(secret, {
    secretType: "SECRET_TYPE_PASSPHRASE",
    algorithm: "KEY_ALGORITHM_UNSPECIFIED",
    bitLength: 0,
  });
  t.is(
    Buffer.from((await runCli(["key", "get", secret.id, ...flags])).text.trim(), "hex").toString(),
    "a vTPM passphrase",
  );
  const human = await runCli(["key", "meta", secret.id, ...flags]);
  t.regex(human.text, /passphrase\s+ACTIVE/);

  const consumer = ["--service", "cinder", "--resource-type", "volume", "--resource-id", "vol-5"];
  const added = await runCli(["key", "add-consumer", xts.id, ...consumer, ...flags]);
  t.is(added.code, 0, added.stderr);
  t.regex(
    added.text,
    /^added: key .* has 1 consumer\(s\)\nSERVICE +RESOURCE TYPE +RESOURCE ID +SINCE\ncinder +volume +vol-5 /,
  );
  const listed = await runCliJson<{ keyId: string; consumers: { service: string }[] }>([
    "key",
    "consumers",
    xts.id,
    "--json",
    ...flags,
  ]);
  t.deepEqual(
    listed.consumers.map((c) => c.service),
    ["cinder"],
  );
  const protectedDelete = await runCli(["key", "delete", xts.id, "--yes", ...flags]);
  t.is(protectedDelete.code, 1);
  t.regex(protectedDelete.stderr, /FAILED_PRECONDITION.*consumers/);
  const removed = await runCli(["key", "remove-consumer", xts.id, ...consumer, ...flags]);
  t.regex(removed.text, /^removed: key .* has 0 consumer\(s\)/);
  await runCli(["key", "add-consumer", xts.id, ...consumer, ...flags]);
  const forced = await runCliJson<KeyJson>(["key", "delete", xts.id, "--force", "--yes", "--json", ...flags]);
  t.is(forced.state, "KEY_STATE_DESTROYED");
  t.true(Date.parse(forced.updatedAt!) >= Date.parse(forced.createdAt!));

  const badBits = await runCli([
    "key",
    "import",
    "--project",
    "xts",
    "--scope",
    "s",
    "--name",
    "n",
    "--material-file",
    file,
    "--bits",
    "128",
    ...flags,
  ]);
  t.is(badBits.code, 2);
  t.regex(badBits.stderr, /--bits/);
  const badType = await runCli([
    "key",
    "import",
    "--project",
    "xts",
    "--scope",
    "s",
    "--name",
    "n",
    "--material-file",
    file,
    "--type",
    "rsa",
    ...flags,
  ]);
  t.is(badType.code, 2);
  t.regex(badType.stderr, /--type/);
});

test("grant and revoke through the CLI", async (t) => {
  const flags = peer.cliFlags();
  const key = await runCliJson<KeyJson>([
    "key",
    "create",
    "--project",
    "vol",
    "--scope",
    "v9",
    "--name",
    "n",
    "--json",
    ...flags,
  ]);
  const grant = await runCliJson<{ id: string; keyId: string; grantee: string; expiresAt: string }>([
    "key",
    "grant",
    key.id,
    "--grantee",
    "compute-7",
    "--expires-in",
    "10m",
    "--json",
    ...flags,
  ]);
  t.regex(grant.id, UUID);
  t.like(grant, { keyId: key.id, grantee: "compute-7" });
  const revoked = await runCliJson<{ id: string; revokedAt?: string }>([
    "key",
    "revoke",
    grant.id,
    "--json",
    ...flags,
  ]);
  t.is(revoked.id, grant.id);
  t.truthy(revoked.revokedAt);
});

test("errors print the status name, exit by class (NOT_FOUND 3, INVALID_ARGUMENT 2), and never key bytes", async (t) => {
  const flags = peer.cliFlags();
  const missing = await runCli(["key", "get", "7d1c2a9e-3b41-4f7a-9a53-0c3f6e2b8d11", ...flags]);
  t.is(missing.code, 3);
  t.regex(missing.stderr, /NOT_FOUND/);
  t.is(missing.stdout.length, 0);

  const malformed = await runCli(["key", "meta", "not-a-uuid", ...flags]);
  t.is(malformed.code, 2);
  t.regex(malformed.stderr, /INVALID_ARGUMENT/);

  const tooShort = await runCli([
    "key",
    "import",
    "--project",
    "p",
    "--scope",
    "s",
    "--name",
    "n",
    "--material-hex",
    "00112233",
    ...flags,
  ]);
  t.is(tooShort.code, 2);
  t.regex(tooShort.stderr, /INVALID_ARGUMENT/);
  t.false(tooShort.stderr.includes("00112233"));
});

test("bad flags are usage errors: exit 2, naming the flag, nothing sent", async (t) => {
  const flags = peer.cliFlags();
  const unknown = await runCli([
    "key",
    "create",
    "--project",
    "p",
    "--scope",
    "s",
    "--name",
    "n",
    "--colour",
    "blue",
    ...flags,
  ]);
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /--colour/);
  const bits = await runCli([
    "key",
    "create",
    "--project",
    "p",
    "--scope",
    "s",
    "--name",
    "n",
    "--bits",
    "100",
    ...flags,
  ]);
  t.is(bits.code, 2);
  t.regex(bits.stderr, /--bits/);
  const noProject = await runCli(["key", "create", "--scope", "s", "--name", "n", ...flags]);
  t.is(noProject.code, 2);
  t.regex(noProject.stderr, /--project/);
  const format = await runCli(["key", "get", "x", "--format", "pem", ...flags]);
  t.is(format.code, 2);
  t.regex(format.stderr, /--format/);
  const noEndpoint = await runCli(["key", "list", "--project", "p"]);
  t.is(noEndpoint.code, 2);
  t.regex(noEndpoint.stderr, /--endpoint/);
  const sub = await runCli(["key", "frobnicate"]);
  t.is(sub.code, 2);
  t.regex(sub.stderr, /frobnicate/);
  // None of the above reached the peer: the store holds no key of project "p".
  const list = await runCliJson<{ keys: unknown[] }>(["key", "list", "--project", "p", "--json", ...flags]);
  t.deepEqual(list.keys, []);
});

test("status --json says what the peer is and that its master key is a development file", async (t) => {
  const client = peer.client();
  await client.createKey({ project: "status", scope: "s", name: "n" });
  const r = await runCli(["status", "--json", ...peer.cliFlags()]);
  t.is(r.code, 0, r.stderr);
  const status = JSON.parse(r.text) as Record<string, unknown>;
  t.is(status.masterKeyProtector, "development-file");
  t.is(status.developmentMasterKey, true);
  t.is(status.sealState, "unsealed");
  t.true(Number(status.keyCount) >= 1);
  t.regex(r.stderr, /DEVELOPMENT FILE/);
  const human = await runCli(["status", ...peer.cliFlags()]);
  t.regex(human.text, /NOT FOR PRODUCTION/);
});

test("audit --json lists who did what to which key, and never key bytes", async (t) => {
  const flags = peer.cliFlags();
  const key = await runCliJson<KeyJson>([
    "key",
    "create",
    "--project",
    "audited",
    "--scope",
    "a",
    "--name",
    "n",
    "--json",
    ...flags,
  ]);
  const material = (await runCli(["key", "get", key.id, ...flags])).text.trim();
  const r = await runCli(["audit", "--key-id", key.id, "--json", ...flags]);
  t.is(r.code, 0, r.stderr);
  const { events } = JSON.parse(r.text) as {
    events: { operation: string; keyId?: string; identity: string; outcome: string }[];
  };
  t.deepEqual(
    events.map((e) => [e.operation, e.identity, e.outcome]),
    [
      ["CreateKey", "admin", "AUDIT_OUTCOME_OK"],
      ["GetKey", "admin", "AUDIT_OUTCOME_OK"],
    ],
  );
  t.true(events.every((e) => e.keyId === key.id));
  t.false(r.text.includes(material));
  t.false(r.text.includes(Buffer.from(material, "hex").toString("base64")));
  const limited = await runCliJson<{ events: unknown[] }>(["audit", "--limit", "3", "--json", ...flags]);
  t.is(limited.events.length, 3);
});

/** The names a help text lists as `  name  summary` lines: its subcommands (or commands). */
const listedNames = (help: string): string[] =>
  [...help.matchAll(/^ {2}([a-z][a-z-]*)(?: \[options\])?(?: <[a-z-]+>)? {2,}/gm)].map((m) => m[1]!);

test("--help works on every command and every subcommand", async (t) => {
  const top = await runCli(["--help"]);
  t.is(top.code, 0);
  const commands = listedNames(top.text);
  t.true(commands.length >= 8, top.text);
  const invocations: string[][] = [];
  for (const c of commands) {
    const r = await runCli([c, "--help"]);
    t.is(r.code, 0, `lockbox ${c} --help: ${r.stderr}`);
    t.regex(r.text, /usage: lockbox /i, `lockbox ${c} --help`);
    for (const sub of listedNames(r.text)) invocations.push([c, sub, "--help"]);
  }
  t.deepEqual(
    invocations.filter(([c]) => c === "key").map(([, s]) => s),
    [
      "create",
      "import",
      "get",
      "meta",
      "list",
      "delete",
      "clone",
      "rekey-clone",
      "grant",
      "revoke",
      "add-consumer",
      "remove-consumer",
      "consumers",
    ],
  );
  t.true(invocations.some(([c, s]) => c === "dev-cluster" && s === "start"));
  // `identity` has one subcommand, named in its usage line rather than listed.
  if (!invocations.some(([c]) => c === "identity")) invocations.push(["identity", "issue", "--help"]);
  // Four at a time: each is a separate process, and there are a few dozen.
  const queue = [...invocations];
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let args = queue.shift(); args !== undefined; args = queue.shift()) {
        const r = await runCli(args);
        t.is(r.code, 0, `lockbox ${args.join(" ")}: ${r.stderr}`);
        t.regex(r.text, /usage: lockbox /i, `lockbox ${args.join(" ")}`);
      }
    }),
  );
});

test("the connection can come from LOCKBOX_* environment variables alone", async (t) => {
  const env = {
    LOCKBOX_ENDPOINT: peer.address,
    LOCKBOX_CA: peer.admin.ca,
    LOCKBOX_CERT: peer.admin.cert,
    LOCKBOX_KEY: peer.admin.key,
  };
  const key = await runCliJson<KeyJson>(
    ["key", "create", "--project", "env", "--scope", "s", "--name", "n", "--json"],
    { env },
  );
  const meta = await runCliJson<KeyJson>(["key", "meta", key.id, "--json"], { env });
  t.is(meta.id, key.id);
  // A flag beats the environment: a wrong CA file from the flag is what gets used, and reported.
  const r = await runCli(["key", "meta", key.id, "--ca", join(peer.dir, "no-such-ca.crt")], { env });
  t.is(r.code, 2);
  t.regex(r.stderr, /ca: cannot read .*no-such-ca\.crt \(ENOENT\)/);
});
