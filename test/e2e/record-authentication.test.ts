/**
 * Every field of a stored key record is authenticated: a byte flipped inside a record (below
 * LevelDB's checksums, which the edit recomputes) makes GetKey and GetKeyMetadata DATA_LOSS, or
 * at most gives back the exact original answer; never a changed name, date, size or state.
 * Before, only the material's AAD fields were covered, and a flipped byte in a table changed a
 * key's name and created time without an error. A real peer process, edited on disk while stopped.
 */
import test from "ava";
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { Level } from "level";

import { isLockboxClientError, type KeyMetadata, type LockboxClient } from "../../src/client/index.js";
import { spawnPeer, type PeerProcess } from "../helpers/peer-process.js";

let peer: PeerProcess;
test.before(async () => {
  peer = await spawnPeer();
});
test.after.always(async () => {
  await peer?.teardown();
});

/** Whole-field edits a hostile disk could make, each keeping the record well-formed JSON. */
const FIELD_EDITS: [string, (r: Record<string, unknown>) => void][] = [
  ["project", (r) => (r.project = "other")],
  ["scope", (r) => (r.scope = `${String(r.scope)}x`)],
  ["name", (r) => (r.name = "renamed")],
  ["bitLength", (r) => (r.bitLength = 128)],
  ["createdAtMs", (r) => (r.createdAtMs = Number(r.createdAtMs) - 86_400_000)],
  ["parentId", (r) => (r.parentId = "0b6f2d1e-8a3c-4e5f-9d7b-1c2a3e4f5a6b")],
  ["state", (r) => (r.state = "deactivated")],
  // Fields the key model grew later: added to a record that had none, each is refused too.
  ["secretType", (r) => (r.secretType = "opaque")],
  ["expiresAtMs", (r) => (r.expiresAtMs = Number(r.createdAtMs) + 86_400_000)],
  ["updatedAtMs", (r) => (r.updatedAtMs = Number(r.createdAtMs) + 1)],
];

test("a flipped byte or edited field in a stored record is DATA_LOSS on GetKey and GetKeyMetadata, never a changed field", async (t) => {
  const client = peer.client(peer.admin, { cache: false });
  const made = async (i: number) =>
    client.createKey({ project: "vol", scope: `s${i}`, name: `key-${i}`, bitLength: 256 });
  const fieldVictims: KeyMetadata[] = [];
  for (const [i] of FIELD_EDITS.entries()) fieldVictims.push(await made(i));
  // One key per flipped byte position (every 5th byte of the stored record).
  const probe = await made(100);
  // A stored record here is about 450 bytes; positions past a record's end are left alone.
  const recordBytes = 520;
  const flipVictims: { at: number; key: KeyMetadata }[] = [];
  for (let at = 0; at < recordBytes; at += 5) flipVictims.push({ at, key: await made(1000 + at) });
  const originals = new Map<string, { meta: unknown; material: Buffer }>();
  for (const k of [...fieldVictims, ...flipVictims.map((v) => v.key)]) {
    originals.set(k.id, {
      meta: await client.getKeyMetadata(k.id),
      material: (await client.getKey(k.id)).material,
    });
  }
  await peer.kill("SIGTERM");

  const flipped = new Set<string>();
  await editRecords(async (get, put) => {
    for (const [i, [, edit]] of FIELD_EDITS.entries()) {
      const r = JSON.parse((await get(fieldVictims[i]!.id)).toString("utf8")) as Record<string, unknown>;
      edit(r);
      await put(fieldVictims[i]!.id, Buffer.from(JSON.stringify(r)));
    }
    for (const { at, key } of flipVictims) {
      const v = Buffer.from(await get(key.id));
      if (at >= v.length) continue;
      v[at]! ^= 0x01;
      await put(key.id, v);
      flipped.add(key.id);
    }
  });
  await peer.restart();

  const after = peer.client(peer.admin, { cache: false });
  for (const [i, [field]] of FIELD_EDITS.entries()) {
    await dataLossOrOriginal(t, after, fieldVictims[i]!.id, originals, `edited ${field}`, true);
  }
  let refused = 0;
  for (const { at, key } of flipVictims) {
    if (!flipped.has(key.id)) continue;
    if (await dataLossOrOriginal(t, after, key.id, originals, `byte ${at} flipped`, false)) refused++;
  }
  // A flip can only be served unrefused where it changes nothing decoded (e.g. unused base64 bits).
  t.true(flipped.size > 60, `${flipped.size} records flipped`);
  t.true(refused >= flipped.size - 2, `${refused} of ${flipped.size} flips refused`);
  // The damage is confined to the edited records.
  t.deepEqual((await after.getKey(probe.id)).material.length, 32);
});

/** DATA_LOSS (returns true), or exactly the original answer (only when `mustRefuse` is false). */
async function dataLossOrOriginal(
  t: import("ava").ExecutionContext,
  client: LockboxClient,
  id: string,
  originals: Map<string, { meta: unknown; material: Buffer }>,
  what: string,
  mustRefuse: boolean,
): Promise<boolean> {
  const original = originals.get(id)!;
  let refused = true;
  for (const call of [
    () => client.getKeyMetadata(id),
    async () => (await client.getKey(id)).material,
  ] as const) {
    try {
      const answer = await call();
      refused = false;
      t.false(mustRefuse, `${what}: served instead of DATA_LOSS`);
      t.deepEqual(
        answer,
        Buffer.isBuffer(answer) ? original.material : original.meta,
        `${what}: a changed answer`,
      );
    } catch (err) {
      t.true(isLockboxClientError(err, "DATA_LOSS"), `${what}: ${String(err)}`);
    }
  }
  return refused;
}

async function levelDbDir(): Promise<string> {
  return join(peer.dir, "data");
}

/** Opens the stopped peer's LevelDB and hands `edit` a get and put of records by key id. */
async function editRecords(
  edit: (
    get: (id: string) => Promise<Buffer>,
    put: (id: string, v: Buffer) => Promise<void>,
  ) => Promise<void>,
): Promise<void> {
  await fs.access(await levelDbDir());
  const db = new Level<string, Buffer>(await levelDbDir(), { keyEncoding: "utf8", valueEncoding: "buffer" });
  await db.open();
  try {
    const records = db.sublevel<string, Buffer>("records", { keyEncoding: "utf8", valueEncoding: "buffer" });
    const keys = await records.keys().all();
    const keyOf = (id: string): string => {
      const k = keys.find((k) => k.endsWith(`/${id}`));
      if (k === undefined) throw new Error(`record of ${id} not found`);
      return k;
    };
    await edit(
      async (id) => (await records.get(keyOf(id)))!,
      (id, v) => records.put(keyOf(id), v),
    );
  } finally {
    await db.close();
  }
}
