import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import test from "ava";
import { partitionOfKeyId } from "../../cluster/ring/index.js";
import { decodeReplicatedKey } from "../../cluster/replication/index.js";
import { LevelReplicaStore } from "../../src/replication/leveldb-replica-store.js";
import { openPeerStore } from "../../src/store/peer-store.js";
import { spawnOwned } from "../helpers/spawn-owned.js";
import { keyRecord, POWER, SALT } from "./replica-burst-child.js";

const child = fileURLToPath(new URL("./replica-burst-child.js", import.meta.url));

test("every put a replica acknowledged before SIGKILL is in its LevelDB after reopening, deletes included", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-replica-durable-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const proc = spawnOwned(process.execPath, [child, dir], { stdio: ["ignore", "pipe", "inherit"] });
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
  });
  const created: number[] = [];
  const deletedKeys: number[] = [];
  let partial = "";
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    proc.on("exit", (_c, signal) => resolve(signal)),
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("child acknowledged too few puts within 30 s")), 30_000);
    proc.stdout!.on("data", (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        const [kind, n] = line.split(" ");
        (kind === "C" ? created : deletedKeys).push(Number(n));
      }
      if (created.length >= 400) {
        proc.kill("SIGKILL"); // mid-burst: later puts are in flight
        clearTimeout(timer);
        resolve();
      }
    });
  });
  t.is(await exited, "SIGKILL");
  const store = await openPeerStore(dir);
  t.teardown(() => store.close());
  const rs = new LevelReplicaStore(store, POWER);
  const gone = new Set(deletedKeys);
  for (const n of created) {
    const k = keyRecord(n);
    const bytes = await rs.getRecord(partitionOfKeyId(SALT, k.fields.id, POWER), k.fields.id);
    if (bytes === undefined) {
      t.fail(`acknowledged create ${n} is missing`);
      continue;
    }
    const stored = decodeReplicatedKey(bytes);
    if (gone.has(n)) t.truthy(stored.tombstone, `acknowledged delete of ${n} is undone`);
    else if (stored.tombstone === null)
      t.deepEqual(new Uint8Array(stored.wrappedMaterial!), k.wrappedMaterial);
  }
  t.log(
    `${created.length} creates and ${deletedKeys.length} deletes acknowledged before SIGKILL, all on disk`,
  );
  t.true(deletedKeys.length > 0);
});
