/**
 * Keys at rest: the peer's directory never holds key material in the clear
 * (nor as hex or base64), and a wrapped key moved to another record's place
 * fails its integrity check instead of being served as the other key.
 */
import test from "ava";
import { promises as fs } from "node:fs";
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
