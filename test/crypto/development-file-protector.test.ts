import { execFileSync } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import {
  DEVELOPMENT_PROTECTOR_WARNING,
  DevelopmentFileProtector,
} from "../../src/crypto/development-file-protector.js";
import { isLockboxError } from "../../src/errors.js";

async function tempDir(t: import("ava").ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-devkey-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test("create writes a 0600 file that loads back as epoch 1 with a 32-byte key", async (t) => {
  const path = join(await tempDir(t), "cmk");
  const logs: string[] = [];
  const protector = await DevelopmentFileProtector.create(path, { log: (m) => logs.push(m) });
  t.is((await stat(path)).mode & 0o777, 0o600);
  const a = await protector.load();
  const b = await protector.load();
  t.is(a.epoch, 1);
  t.is(a.key.length, 32);
  t.deepEqual(a.key, b.key);
  t.false(a.key.every((x) => x === 0));
  const file = await readFile(path);
  t.not(file.indexOf(Buffer.from(a.key)), -1);
  t.deepEqual(protector.describe().protector, "development-file");
  t.true(protector.describe().insecure);
});

test("load logs the loud development warning and never the key bytes", async (t) => {
  const path = join(await tempDir(t), "cmk");
  const logs: string[] = [];
  const protector = await DevelopmentFileProtector.create(path, { log: (m) => logs.push(m) });
  const { key } = await protector.load();
  t.is(logs.length, 1);
  t.true(logs[0]!.includes(DEVELOPMENT_PROTECTOR_WARNING));
  const k = Buffer.from(key);
  for (const encoding of ["hex", "base64", "base64url"] as const)
    t.false(logs[0]!.includes(k.toString(encoding)));
});

test("a key file readable by group or others is refused", async (t) => {
  const path = join(await tempDir(t), "cmk");
  const protector = await DevelopmentFileProtector.create(path, { log: () => {} });
  for (const mode of [0o644, 0o640, 0o604, 0o660]) {
    await chmod(path, mode);
    const e = await t.throwsAsync(protector.load());
    t.true(isLockboxError(e, "FAILED_PRECONDITION"), mode.toString(8));
    t.true(e!.message.includes("600"));
  }
  await chmod(path, 0o400);
  t.is((await protector.load()).key.length, 32);
});

test("create refuses to overwrite an existing key file; a missing or malformed file is refused", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "cmk");
  await DevelopmentFileProtector.create(path, { log: () => {} });
  const before = await readFile(path);
  t.true(isLockboxError(await t.throwsAsync(DevelopmentFileProtector.create(path)), "ALREADY_EXISTS"));
  t.deepEqual(await readFile(path), before);

  const missing = new DevelopmentFileProtector(join(dir, "nope"), { log: () => {} });
  t.true(isLockboxError(await t.throwsAsync(missing.load()), "FAILED_PRECONDITION"));

  const garbage = join(dir, "garbage");
  await writeFile(garbage, Buffer.alloc(48, 1), { mode: 0o600 });
  t.true(
    isLockboxError(
      await t.throwsAsync(new DevelopmentFileProtector(garbage, { log: () => {} }).load()),
      "DATA_LOSS",
    ),
  );
});

test("a directory or a FIFO at the key path is refused as not a file, without hanging", async (t) => {
  const dir = await tempDir(t);
  const fifo = join(dir, "fifo");
  execFileSync("mkfifo", ["-m", "600", fifo]);
  for (const path of [dir, fifo]) {
    const e = await t.throwsAsync(new DevelopmentFileProtector(path, { log: () => {} }).load());
    t.true(isLockboxError(e, "FAILED_PRECONDITION"), String(e));
    t.regex(e!.message, /is not a file/);
  }
});
