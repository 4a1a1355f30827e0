import test from "ava";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initCluster } from "../../src/cli/commands/init.js";
import { DevelopmentFileProtector } from "../../src/crypto/development-file-protector.js";
import { isLockboxError } from "../../src/errors.js";
import { startPeer } from "../../src/peer/start-peer.js";

const quiet = (): void => {};

// A peer handed another cluster's master key must refuse to start, rather than
// serve and then answer DATA_LOSS for every key it holds.
test("a peer refuses to start with a master key other than its store's", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-cmk-mismatch-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await initCluster({ dir, peerId: "peer-1", listen: "127.0.0.1:0" });

  const first = await startPeer({ dir, listen: "127.0.0.1:0", log: quiet });
  await first.close();

  const masterKeyPath = join(dir, "master-key.dev");
  await rm(masterKeyPath);
  await DevelopmentFileProtector.create(masterKeyPath, { log: quiet });

  const err = await t.throwsAsync(startPeer({ dir, listen: "127.0.0.1:0", log: quiet }));
  t.true(isLockboxError(err, "FAILED_PRECONDITION"), String(err));
  t.regex(err!.message, /master key does not match/);
});
