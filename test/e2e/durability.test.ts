/**
 * Durability: every create the peer acknowledged survives a SIGKILL right
 * after the last acknowledgement, with its exact material.
 */
import test from "ava";

import type { KeyMetadata } from "../../src/client/index.js";
import { spawnPeer } from "../helpers/peer-process.js";

const CREATES = 200;
const CONCURRENCY = 32;

test("acknowledged creates survive SIGKILL of the peer and a restart, material exact", async (t) => {
  const peer = await spawnPeer();
  t.teardown(() => peer.teardown());
  const client = peer.client(peer.admin, { cache: false });

  const acked: { key: KeyMetadata; materialHex: string }[] = [];
  // Half import (material chosen here), half create (material read back right after the ack).
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < CREATES) {
      const i = next++;
      if (i % 2 === 0) {
        const material = Buffer.alloc(32);
        material.writeUInt32BE(i, 0);
        material.write("durable", 8);
        const key = await client.importKey({ project: `d${i % 4}`, scope: `s${i}`, name: `k${i}`, material });
        acked.push({ key, materialHex: material.toString("hex") });
      } else {
        const key = await client.createKey({
          project: `d${i % 4}`,
          scope: `s${i}`,
          name: `k${i}`,
          bitLength: i % 3 === 0 ? 128 : 256,
        });
        // Fresh material is known only to the peer; read it back (a read, no key write) to compare later.
        const { material } = await client.getKey(key.id);
        acked.push({ key, materialHex: material.toString("hex") });
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  // No clean shutdown: whatever was acknowledged must already be on disk.
  await peer.kill("SIGKILL");
  t.is(acked.length, CREATES);

  await peer.restart();
  const after = peer.client(peer.admin, { cache: false });
  const missing: string[] = [];
  const wrong: string[] = [];
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
      for (let i = w; i < acked.length; i += CONCURRENCY) {
        const { key, materialHex } = acked[i]!;
        try {
          const got = await after.getKey(key.id);
          if (got.material.toString("hex") !== materialHex) wrong.push(key.id);
          if (got.key.scope !== key.scope || got.key.project !== key.project) wrong.push(key.id);
        } catch (err) {
          missing.push(`${key.id}: ${String(err)}`);
        }
      }
    }),
  );
  t.deepEqual(missing, []);
  t.deepEqual(wrong, []);
  const listed = await Promise.all([0, 1, 2, 3].map((p) => after.listAllKeys({ project: `d${p}` })));
  t.is(listed.flat().length, CREATES);
});
