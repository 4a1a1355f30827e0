/**
 * Turning `replication.enabled` on for a data directory that already holds keys made without it
 * (issue 10): a real peer process creates keys on its own (replication off), stops, and is started
 * again with replication on. It refuses to start, and says why and what to do (the keys share the
 * "records" sublevel with the replica, whose format they are not: the replica would take them for
 * damage). Nothing on disk changed: started again with replication off, it serves the same keys with
 * the same material.
 */
import test from "ava";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { spawnPeer, type PeerProcess } from "../helpers/peer-process.js";
import { UNATTESTED_FLAG } from "../helpers/unattested-member.js";

async function setReplication(p: PeerProcess, enabled: boolean): Promise<void> {
  const path = join(p.dir, "config.json");
  const config = JSON.parse(await readFile(path, "utf8")) as { replication?: Record<string, unknown> };
  config.replication = { ...config.replication, enabled };
  await writeFile(path, JSON.stringify(config, null, 2));
}

test("a peer whose store holds keys made without replication refuses to start with replication on, and keeps them", async (t) => {
  t.timeout(180_000);
  const p = await spawnPeer({ peerId: "peer-local", configPatch: { ...UNATTESTED_FLAG } });
  t.teardown(() => p.teardown());
  const client = p.client();
  const key = await client.createKey({ project: "proj", scope: "vol-1", name: "local" });
  const material = new Uint8Array((await client.getKey(key.id, { bypassCache: true })).material);
  await p.kill("SIGTERM");

  await setReplication(p, true);
  const refused = await p.restart().then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  t.truthy(refused, "the peer did not start");
  const log = await p.log();
  t.regex(log, /replication\.enabled, but this peer's store holds keys made without replication/);
  t.regex(log, new RegExp(`key ${key.id} of project proj`));
  t.regex(log, /replication\.enabled false/, "it says what to do");

  await setReplication(p, false);
  await p.restart();
  const again = await p.client().getKey(key.id, { bypassCache: true });
  t.deepEqual(new Uint8Array(again.material), material, "the key is served as before");
});
