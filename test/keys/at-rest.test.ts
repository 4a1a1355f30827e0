import { randomBytes } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { isLockboxError, type LockboxError } from "../../src/errors.js";
import type { KeyService } from "../../src/keys/key-service.js";
import { kekBinding } from "../../src/keys/project-keks.js";
import { openPeerStore } from "../../src/store/peer-store.js";
import { admin, openFixture } from "./key-service-fixture.js";

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(join(entry.parentPath ?? entry.path, entry.name));
  }
  return out;
}

test("no key's material and no project KEK appears anywhere in the data directory", async (t) => {
  const fx = await openFixture(t);
  const service = fx.handle.service;
  const materials: Buffer[] = [];
  for (let i = 0; i < 150; i++) {
    const meta = await service.createKey(admin, {
      project: `p${i % 5}`,
      scope: "s",
      name: `k${i}`,
      algorithm: "AES",
      bitLength: i % 2 ? 128 : 256,
    });
    materials.push(Buffer.from((await service.getKey(admin, meta)).material));
  }
  for (let i = 0; i < 20; i++) {
    const material = new Uint8Array(randomBytes(32));
    await service.importKey(admin, { project: "imp", scope: "s", name: `i${i}`, algorithm: "AES", material });
    materials.push(Buffer.from(material));
  }
  const parent = await service.createKey(admin, {
    project: "p0",
    scope: "s",
    name: "parent",
    algorithm: "AES",
    bitLength: 256,
  });
  materials.push(Buffer.from((await service.getKey(admin, parent)).material));
  await service.cloneKey(admin, parent);
  materials.push(
    Buffer.from((await service.getKey(admin, await service.rekeyClone(admin, parent))).material),
  );
  // Project KEKs must not be on disk in the clear either: unwrap each stored one to know its bytes.
  const keks = await fx.handle.store.sublevel("meta").iterator({ gte: "kek/", lt: "kek0" }).all();
  t.is(keks.length, 6);
  for (const [k, wrapped] of keks) {
    const project = k.slice("kek/".length);
    materials.push(Buffer.from(fx.handle.barrier.unwrap(wrapped, kekBinding(project))));
  }
  // Audit events too: they name keys, never their bytes.
  await fx.handle.audit.append({
    identity: "x",
    operation: "GetKey",
    keyId: parent.id,
    outcome: "ok",
    status: "OK",
  });
  await fx.handle.close();

  const scan = async (when: string) => {
    const files = await filesUnder(fx.dir);
    t.true(
      files.some((f) => f.endsWith(".log") || f.endsWith(".ldb")),
      `${when}: LevelDB files present`,
    );
    for (const file of files) {
      const content = await readFile(file);
      for (const m of materials) {
        for (const encoding of ["raw", "hex", "base64"] as const) {
          const needle = encoding === "raw" ? m : Buffer.from(m.toString(encoding));
          t.is(content.indexOf(needle), -1, `${when}: material found in ${file} (${encoding})`);
        }
      }
    }
  };
  t.is(materials.length, 172 + 6);
  await scan("after stop"); // the write-ahead log holds the records
  // A restart turns the log into sorted tables; scan what that leaves as well.
  await (await fx.open()).close();
  await scan("after restart");
});

test("swapping two records' wrapped ciphertexts on disk makes getKey fail DATA_LOSS, never returning the other key", async (t) => {
  const fx = await openFixture(t);
  const service = fx.handle.service;
  const a = await service.createKey(admin, {
    project: "p",
    scope: "s",
    name: "a",
    algorithm: "AES",
    bitLength: 256,
  });
  const b = await service.createKey(admin, {
    project: "p",
    scope: "s",
    name: "b",
    algorithm: "AES",
    bitLength: 256,
  });
  const c = await service.createKey(admin, {
    project: "p",
    scope: "s",
    name: "c",
    algorithm: "AES",
    bitLength: 256,
  });
  const cMaterial = (await service.getKey(admin, c)).material;
  await fx.handle.close();

  // Edit the LevelDB directly, as an attacker with disk access would.
  const store = await openPeerStore(fx.dbDir);
  const records = store.sublevel("records");
  const entries = await records.iterator().all();
  const find = (id: string) => entries.find(([k]) => k.endsWith(`/${id}`))!;
  const [keyA, valueA] = find(a.id);
  const [keyB, valueB] = find(b.id);
  const recA = JSON.parse(Buffer.from(valueA).toString());
  const recB = JSON.parse(Buffer.from(valueB).toString());
  [recA.wrappedMaterial, recB.wrappedMaterial] = [recB.wrappedMaterial, recA.wrappedMaterial];
  await store.write([
    { type: "put", sublevel: "records", key: keyA, value: Buffer.from(JSON.stringify(recA)) },
    { type: "put", sublevel: "records", key: keyB, value: Buffer.from(JSON.stringify(recB)) },
  ]);
  await store.close();

  const reopened = await fx.reopen();
  for (const meta of [a, b]) {
    const e = await t.throwsAsync<LockboxError>(reopened.service.getKey(admin, meta));
    t.true(isLockboxError(e, "DATA_LOSS"));
    t.is(e!.message, `integrity check failed for key ${meta.id}`);
    t.true(isLockboxError(await t.throwsAsync(reopened.service.cloneKey(admin, meta)), "DATA_LOSS"));
  }
  // Untouched keys still work.
  t.deepEqual((await reopened.service.getKey(admin, c)).material, cMaterial);
});

test("moving a whole record under another id's key is DATA_LOSS", async (t) => {
  const fx = await openFixture(t);
  const a = await fx.handle.service.createKey(admin, {
    project: "p",
    scope: "s",
    name: "a",
    algorithm: "AES",
    bitLength: 256,
  });
  const b = await fx.handle.service.createKey(admin, {
    project: "p",
    scope: "s",
    name: "b",
    algorithm: "AES",
    bitLength: 256,
  });
  const records = fx.handle.store.sublevel("records");
  const entries = await records.iterator().all();
  const keyB = entries.find(([k]) => k.endsWith(`/${b.id}`))![0];
  const valueA = entries.find(([k]) => k.endsWith(`/${a.id}`))![1];
  await fx.handle.store.write([{ type: "put", sublevel: "records", key: keyB, value: valueA }]);
  t.true(isLockboxError(await t.throwsAsync(fx.handle.service.getKey(admin, b)), "DATA_LOSS"));
});

// A tombstone is a new version of the record; LevelDB keeps the old one (with the wrapped
// material) in its write-ahead log and tables until a compaction drops it. "The material is gone"
// must hold on disk, not only in what reads return. The store purges in batches after a delay.
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits (at most 50 x 100 ms) until the service's store has no purge pending. */
async function purgesDone(service: KeyService): Promise<void> {
  for (let i = 0; i < 50 && service.stats().purge.pending > 0; i++) await sleep(100);
}

test("after deleteKey and the purge delay no file in the data directory holds the deleted key's wrapped material", async (t) => {
  const purgeDelayMs = 200;
  const fx = await openFixture(t, { store: { purgeDelayMs } });
  const service = fx.handle.service;
  const req = { project: "p", scope: "s", name: "n", algorithm: "AES", bitLength: 256 } as const;
  const doomed = await service.createKey(admin, req);
  const kept = await service.createKey(admin, req);
  // The tail of each stored envelope (base64 of ciphertext and tag) is random, so a file holding
  // the record holds it verbatim; LevelDB's block compression only shortens the repeated header.
  const tails = new Map<string, string>();
  for await (const v of fx.handle.store.sublevel("records").values()) {
    const stored = JSON.parse(Buffer.from(v).toString("utf8")) as { id: string; wrappedMaterial: string };
    tails.set(stored.id, stored.wrappedMaterial.slice(-24));
  }
  t.is(tails.size, 2);
  await service.deleteKey(admin, doomed);
  const scheduled = service.stats().purge;
  t.is(scheduled.pending, 1, "the delete scheduled one purge");
  t.is(scheduled.delayMs, purgeDelayMs);
  // The purge runs on its own within the delay.
  await purgesDone(service);
  t.like(service.stats().purge, { pending: 0, runs: 1, purgedKeys: 1, failedRuns: 0 });

  const holding = async (tail: string): Promise<string[]> => {
    const found: string[] = [];
    for (const file of await filesUnder(fx.dbDir)) {
      if ((await readFile(file)).includes(tail)) found.push(file);
    }
    return found;
  };
  t.deepEqual(await holding(tails.get(doomed.id)!), [], "the deleted key's envelope is still on disk");
  t.true((await holding(tails.get(kept.id)!)).length > 0, "control: a live key's envelope is found");
  // And it stays gone across a restart.
  await fx.reopen();
  t.deepEqual(await holding(tails.get(doomed.id)!), []);
  const got = await fx.handle.service.getKey(admin, kept);
  t.is(got.material.length, 32);
  // A key whose record already sits in a table (the restart turned the log into tables) too.
  await fx.handle.service.deleteKey(admin, kept);
  await purgesDone(fx.handle.service);
  t.deepEqual(await holding(tails.get(kept.id)!), [], "an older, tabled record is purged as well");
});
