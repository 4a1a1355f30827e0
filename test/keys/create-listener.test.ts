/**
 * The CreateListener of the create-like calls (src/keys/key-model.ts): told the new key's id and
 * project once, just before the key's write, so the call pipeline can start the audit record then;
 * not told anything for a refused request or for a retry answered from its stored entry. A real key
 * service on a real LevelDB (one peer), and on a ring of three peer cores.
 */
import test from "ava";
import { LockboxError } from "../../src/errors.js";
import type { CreateListener } from "../../src/keys/key-model.js";
import { startRingKeyCores } from "../helpers/ring-key-cores.js";
import { admin, openFixture, serviceOf } from "./key-service-fixture.js";

function listener(events: string[]): CreateListener {
  return (key) => events.push(`announced ${key.id} ${key.project}`);
}

test("each create-like call announces its new key just before the write that stores it", async (t) => {
  const { handle } = await openFixture(t);
  const s = handle.service;
  const events: string[] = [];
  const req = { project: "p1", scope: "vol-1", name: "n", algorithm: "AES" as const, bitLength: 256 };
  await s.createKey(admin, req); // writes the project's KEK, before the spy is set
  // A spy on the store's writes, to see the announcement come before the key's write.
  const write = handle.store.write.bind(handle.store);
  handle.store.write = (ops) => {
    events.push("write");
    return write(ops);
  };
  const calls = {
    createKey: () => s.createKey(admin, req, listener(events)),
    importKey: () => s.importKey(admin, { ...req, material: new Uint8Array(32).fill(7) }, listener(events)),
    cloneKey: (id: string) => s.cloneKey(admin, { id }, listener(events)),
    rekeyClone: (id: string) => s.rekeyClone(admin, { id }, listener(events)),
  };
  const parent = await calls.createKey();
  t.deepEqual(events.splice(0), [`announced ${parent.id} p1`, "write"]);
  const imported = await calls.importKey();
  t.deepEqual(events.splice(0), [`announced ${imported.id} p1`, "write"]);
  const clone = await calls.cloneKey(parent.id);
  t.deepEqual(events.splice(0), [`announced ${clone.id} p1`, "write"]);
  const rekeyed = await calls.rekeyClone(parent.id);
  t.deepEqual(events.splice(0), [`announced ${rekeyed.id} p1`, "write"]);
});

test("a refused create and a retry answered from its entry announce nothing", async (t) => {
  const { handle } = await openFixture(t);
  const s = handle.service;
  const events: string[] = [];
  const req = { project: "p1", scope: "vol-1", name: "n", algorithm: "AES" as const, bitLength: 256 };
  const outsider = serviceOf("svc-other", "elsewhere");
  await t.throwsAsync(s.createKey(outsider, req, listener(events)), { instanceOf: LockboxError });
  await t.throwsAsync(s.createKey(admin, { ...req, bitLength: 100 }, listener(events)), {
    instanceOf: LockboxError,
  });
  t.deepEqual(events, []);
  const first = await s.createKey(admin, { ...req, clientRequestId: "req-1" }, listener(events));
  t.deepEqual(events.splice(0), [`announced ${first.id} p1`]);
  t.deepEqual(await s.createKey(admin, { ...req, clientRequestId: "req-1" }, listener(events)), first);
  t.deepEqual(events, [], "the retry wrote nothing, so it announced nothing");
});

test("on the ring, a create announces the id the quorum then stores", async (t) => {
  t.timeout(120_000);
  const { keys } = await startRingKeyCores(t, {
    salt: new Uint8Array(32).fill(4),
    partitionPower: 5,
    dirPrefix: "lockbox-create-listener",
  });
  const owner = serviceOf("svc-owner", "proj");
  const events: string[] = [];
  const req = { project: "proj", scope: "vol-1", name: "n", algorithm: "AES" as const, bitLength: 256 };
  const plain = await keys[0].createKey(owner, req, listener(events));
  const retried = await keys[1].createKey(owner, { ...req, clientRequestId: "r-1" }, listener(events));
  const clone = await keys[2].cloneKey(owner, { id: plain.id }, listener(events));
  t.deepEqual(events, [
    `announced ${plain.id} proj`,
    `announced ${retried.id} proj`,
    `announced ${clone.id} proj`,
  ]);
  t.is((await keys[2].getKeyMetadata(owner, { id: retried.id })).id, retried.id);
});
