/**
 * Keys at rest: the peer's directory never holds key material in the clear
 * (nor as hex or base64), and a wrapped key moved to another record's place
 * fails its integrity check instead of being served as the other key. After
 * DeleteKey and the purge delay, the destroyed key's wrapped material is gone
 * from every file too.
 */
import test from "ava";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Level } from "level";

import { isLockboxClientError } from "../../src/client/index.js";
import { spawnPeer, type PeerProcess } from "../helpers/peer-process.js";

let peer: PeerProcess;

test.before(async () => {
  peer = await spawnPeer();
});

test.after.always(async () => {
  await peer?.teardown();
});

test.serial("no key's material appears in any file under the peer's directory, logs included", async (t) => {
  const client = peer.client(peer.admin, { cache: false });
  const materials: Buffer[] = [];
  for (let i = 0; i < 24; i++) {
    const key = await client.createKey({
      project: `p${i % 3}`,
      scope: `vol-${i}`,
      name: `key-${i}`,
      bitLength: i % 2 === 0 ? 256 : 128,
    });
    const fetched = await client.getKey(key.id);
    materials.push(fetched.material);
    if (i % 4 === 0) materials.push((await client.getKey((await client.cloneKey(key.id)).id)).material);
    if (i % 6 === 0) materials.push((await client.getKey((await client.rekeyClone(key.id)).id)).material);
  }
  const imported = Buffer.from("5f1e0c3a9b7d2e4f6a8c0b1d3e5f7a9c5f1e0c3a9b7d2e4f6a8c0b1d3e5f7a9c", "hex");
  const importedKey = await client.importKey({
    project: "p0",
    scope: "imported",
    name: "imp",
    material: imported,
  });
  t.deepEqual((await client.getKey(importedKey.id)).material, imported);
  materials.push(imported);

  const scanRunning = await scan(peer.dir, materials);
  t.true(scanRunning.files > 3, `scanned ${scanRunning.files} files`);
  t.deepEqual(scanRunning.hits, []);

  // Again after a clean stop, when LevelDB has flushed its memtable to table files.
  await peer.kill("SIGTERM");
  const scanStopped = await scan(peer.dir, materials);
  t.deepEqual(scanStopped.hits, []);
  t.true((await peer.log()).length > 0, "the peer wrote a log, and it was scanned");
  await peer.restart();
});

test.serial("swapping two records' wrapped material on disk makes GetKey fail with DATA_LOSS", async (t) => {
  const client = peer.client(peer.admin, { cache: false });
  const a = await client.createKey({ project: "swap", scope: "a", name: "a", bitLength: 256 });
  const b = await client.createKey({ project: "swap", scope: "b", name: "b", bitLength: 256 });
  const bystander = await client.createKey({ project: "swap", scope: "c", name: "c", bitLength: 256 });
  const bystanderMaterial = (await client.getKey(bystander.id)).material;
  await peer.kill("SIGTERM");

  const db = new Level<string, string>(await levelDbDir(peer.dir), {
    keyEncoding: "utf8",
    valueEncoding: "utf8",
  });
  await db.open();
  try {
    const records = db.sublevel<string, string>("records", { keyEncoding: "utf8", valueEncoding: "utf8" });
    const keyOf = async (id: string): Promise<string> => {
      for await (const k of records.keys()) if (k.endsWith(`/${id}`)) return k;
      throw new Error(`record of ${id} not found in the records sublevel`);
    };
    const [ka, kb] = [await keyOf(a.id), await keyOf(b.id)];
    const ra = JSON.parse((await records.get(ka))!) as { wrappedMaterial: string };
    const rb = JSON.parse((await records.get(kb))!) as { wrappedMaterial: string };
    t.not(ra.wrappedMaterial, rb.wrappedMaterial);
    [ra.wrappedMaterial, rb.wrappedMaterial] = [rb.wrappedMaterial, ra.wrappedMaterial];
    await records.batch([
      { type: "put", key: ka, value: JSON.stringify(ra) },
      { type: "put", key: kb, value: JSON.stringify(rb) },
    ]);
  } finally {
    await db.close();
  }

  await peer.restart();
  const after = peer.client(peer.admin, { cache: false });
  for (const id of [a.id, b.id]) {
    const err = await t.throwsAsync(after.getKey(id));
    t.true(isLockboxClientError(err, "DATA_LOSS"), `${id}: ${String(err)}`);
  }
  // The damage is confined to the two records: the peer still serves the others.
  t.deepEqual((await after.getKey(bystander.id)).material, bystanderMaterial);
  t.is((await after.getStatus()).sealState, "unsealed");
});

test.serial(
  "after DeleteKey and the purge delay the destroyed key's wrapped material is in no file under the peer's directory",
  async (t) => {
    const client = peer.client(peer.admin, { cache: false });
    const doomed = [];
    const kept = [];
    for (let i = 0; i < 6; i++) {
      doomed.push(
        await client.createKey({ project: "purge", scope: `d${i}`, name: "doomed", bitLength: 256 }),
      );
      kept.push(await client.createKey({ project: "purge", scope: `k${i}`, name: "kept", bitLength: 256 }));
    }
    // Those sit in tables after a restart; the next ones stay in the write-ahead log and
    // memtable. Both places must be purged.
    await peer.restart();
    const c = peer.client(peer.admin, { cache: false });
    for (let i = 0; i < 3; i++) {
      doomed.push(await c.createKey({ project: "purge", scope: `late${i}`, name: "doomed", bitLength: 256 }));
    }
    // The wrapped material as stored (base64 in the record), read from a copy of the live store.
    const wrapped = await storedWrappedMaterial([...doomed, ...kept].map((k) => k.id));

    // Still there before the delete: the scan can find what it looks for.
    const needles = (ids: string[]): string[] => ids.map((id) => wrapped.get(id)!);
    const doomedIds = doomed.map((k) => k.id);
    t.true((await scanWrapped(peer.dir, needles(doomedIds))).length > 0, "control: the envelopes are found");

    for (const id of doomedIds) await c.deleteKey(id);
    // The purge delay is 1 s by default; wait for it (bounded: at most 20 x 500 ms).
    let hits = await scanWrapped(peer.dir, needles(doomedIds));
    for (let i = 0; i < 20 && hits.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 500));
      hits = await scanWrapped(peer.dir, needles(doomedIds));
    }
    t.deepEqual(hits, [], "the destroyed keys' envelopes are purged");
    t.true(
      (await scanWrapped(peer.dir, needles(kept.map((k) => k.id)))).length > 0,
      "the kept keys' still are",
    );
    for (const k of kept) t.is((await c.getKey(k.id)).material.length, 32);
    // And after a clean stop.
    await peer.kill("SIGTERM");
    t.deepEqual(await scanWrapped(peer.dir, needles(doomedIds)), []);
    await peer.restart();
  },
);

/** Files under `dir` holding any of the envelopes (given as stored, in base64), as stored or raw. */
async function scanWrapped(dir: string, envelopes: string[]): Promise<string[]> {
  const hits: string[] = [];
  for (const path of await listFiles(dir)) {
    const content = await fs.readFile(path);
    for (const [i, e] of envelopes.entries()) {
      // The random tail (ciphertext and tag) is unique; LevelDB's compression keeps it verbatim.
      const raw = Buffer.from(e, "base64");
      if (content.includes(Buffer.from(e.slice(-24))) || content.includes(raw.subarray(raw.length - 18))) {
        hits.push(`envelope ${i} in ${path}`);
      }
    }
  }
  return hits;
}

/**
 * The stored wrappedMaterial (base64) of each key id, read from a copy of the running peer's
 * LevelDB (its writes are synced, so the copy holds them; opening the copy leaves the original alone).
 */
async function storedWrappedMaterial(ids: string[]): Promise<Map<string, string>> {
  const copy = await fs.mkdtemp(join(tmpdir(), "lockbox-at-rest-copy-"));
  try {
    await fs.cp(await levelDbDir(peer.dir), copy, { recursive: true });
    await fs.rm(join(copy, "LOCK"), { force: true });
    const db = new Level<string, string>(copy, { keyEncoding: "utf8", valueEncoding: "utf8" });
    await db.open();
    try {
      const records = db.sublevel<string, string>("records", { keyEncoding: "utf8", valueEncoding: "utf8" });
      const out = new Map<string, string>();
      for await (const [k, v] of records.iterator()) {
        const id = k.slice(k.indexOf("/") + 1);
        if (ids.includes(id)) out.set(id, (JSON.parse(v) as { wrappedMaterial: string }).wrappedMaterial);
      }
      if (out.size !== ids.length) throw new Error(`found ${out.size} of ${ids.length} records`);
      return out;
    } finally {
      await db.close();
    }
  } finally {
    await fs.rm(copy, { recursive: true, force: true });
  }
}

/** Every occurrence of any material (raw, hex, base64) in any file under `dir`. */
async function scan(dir: string, materials: Buffer[]): Promise<{ files: number; hits: string[] }> {
  const needles = materials.flatMap((m, i) => [
    { label: `key ${i} raw`, bytes: m },
    { label: `key ${i} hex`, bytes: Buffer.from(m.toString("hex")) },
    { label: `key ${i} HEX`, bytes: Buffer.from(m.toString("hex").toUpperCase()) },
    { label: `key ${i} base64`, bytes: Buffer.from(m.toString("base64")) },
  ]);
  const hits: string[] = [];
  let files = 0;
  for (const path of await listFiles(dir)) {
    const content = await fs.readFile(path);
    files++;
    for (const n of needles) if (content.includes(n.bytes)) hits.push(`${n.label} in ${path}`);
  }
  return { files, hits };
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(join(e.parentPath, e.name));
  }
  return out;
}

/** The directory of the peer's LevelDB: the one holding LevelDB's CURRENT file. */
async function levelDbDir(dir: string): Promise<string> {
  const current = (await listFiles(dir)).filter((p) => p.endsWith("/CURRENT"));
  if (current.length !== 1) throw new Error(`expected one LevelDB under ${dir}, found ${current.length}`);
  return current[0]!.slice(0, -"/CURRENT".length);
}
