/**
 * Child process for the storage crash test: appends one entry (and the matching hard state) per synced
 * save to a LevelDB raft storage in argv[2], printing "acked INDEX" after each save resolved, until killed.
 */
import { Level } from "level";
import { EntryType } from "../../cluster/raft/core/types.js";
import { LevelDbRaftStorage } from "../../src/raft/leveldb-raft-storage.js";

const db = new Level<string, Uint8Array>(process.argv[2]!, { valueEncoding: "view" });
await db.open();
const storage = new LevelDbRaftStorage(db.sublevel<string, Uint8Array>("raft", { valueEncoding: "view" }));
const persisted = await storage.load();
let index = persisted.entries.at(-1)?.index ?? 0;
// Bounded: the parent kills us long before this.
for (let n = 0; n < 100_000; n++) {
  index++;
  const data = new TextEncoder().encode(`entry-${index}`);
  await storage.save({
    sync: true,
    snapshot: null,
    entries: [{ index, term: 1, type: EntryType.Normal, data, confChange: null, confState: null }],
    hardState: { term: 1, vote: "1", commit: index },
  });
  process.stdout.write(`acked ${index}\n`);
}
