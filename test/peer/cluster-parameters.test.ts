import test from "ava";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initCluster } from "../../src/cli/commands/init.js";
import { isLockboxError } from "../../src/errors.js";
import { startPeer } from "../../src/peer/start-peer.js";
import { call, clientsFor, type PeerFixture } from "../server/peer-fixture.js";

const quiet = (): void => {};

// Records sit at partitionOf(salt, id, power). A store written with one salt or partition power
// and served with another would find none of its keys (NOT_FOUND for every one) and file new
// ones elsewhere; the peer must refuse to start instead.
test("a peer refuses to start when config.json's partition power or cluster salt differ from its store's", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-cluster-params-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await initCluster({ dir, peerId: "peer-1", listen: "127.0.0.1:0" });
  const read = (f: string): Promise<string> => readFile(join(dir, f), "utf8");
  const identities = {
    ca: { certificatePem: await read("ca.crt"), privateKeyPem: await read("ca.key") },
    admin: { certificatePem: await read("admin.crt"), privateKeyPem: await read("admin.key") },
  };

  const serveAndGet = async (create: boolean, id?: string): Promise<{ id: string; material: string }> => {
    const peer = await startPeer({ dir, listen: "127.0.0.1:0", log: quiet });
    try {
      const f: PeerFixture = { dir, peer, logs: [], ...identities };
      const c = clientsFor(t, f, f.admin);
      if (create) {
        const created = await call(c.keys, "CreateKey", {
          project: "p",
          scope: "s",
          name: "n",
          algorithm: "KEY_ALGORITHM_AES",
          bit_length: 256,
        });
        if (!created.ok) throw created.error;
        id = created.value.key.id as string;
      }
      const got = await call(c.keys, "GetKey", { id });
      c.close();
      if (!got.ok) throw got.error;
      return { id: id!, material: Buffer.from(got.value.material as Buffer).toString("hex") };
    } finally {
      await peer.close(1_000);
    }
  };
  const before = await serveAndGet(true);

  const configPath = join(dir, "config.json");
  const original = await readFile(configPath, "utf8");
  const config = JSON.parse(original) as { partitionPower: number; clusterSalt: string };
  const edits = [
    { field: "partitionPower", config: { ...config, partitionPower: config.partitionPower + 2 } },
    { field: "clusterSalt", config: { ...config, clusterSalt: "ab".repeat(32) } },
  ];
  for (const edit of edits) {
    await writeFile(configPath, JSON.stringify(edit.config));
    const outcome = await startPeer({ dir, listen: "127.0.0.1:0", log: quiet }).then(
      async (peer) => {
        await peer.close(1_000);
        return undefined;
      },
      (err: unknown) => err,
    );
    t.true(isLockboxError(outcome, "FAILED_PRECONDITION"), `${edit.field}: ${String(outcome)}`);
    t.regex(String((outcome as Error | undefined)?.message), new RegExp(edit.field));
  }

  await writeFile(configPath, original);
  t.deepEqual(await serveAndGet(false, before.id), before, "with the original config every key is back");
});
