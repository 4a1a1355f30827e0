/**
 * The batched purge of destroyed material is visible in a peer's status: against a real peer
 * process, a DeleteKey leaves one value pending (the purge waits for its batch), and after the
 * purge delay nothing is pending and a run has happened, as GetStatus, `lockbox status --json` and
 * the status text all say.
 */
import test from "ava";

import { runCli } from "../helpers/cli-process.js";
import { spawnPeer, type PeerProcess } from "../helpers/peer-process.js";

let peer: PeerProcess;

test.before(async () => {
  peer = await spawnPeer();
});

test.after.always(async () => {
  await peer?.teardown();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test("after a DeleteKey the status shows the purge pending, and after the purge delay a run and nothing pending", async (t) => {
  const client = peer.client(peer.admin, { cache: false, deadlineMs: 30_000 });
  const before = (await client.getStatus()).purge;
  t.truthy(before, "the peer reports its purge");
  t.is(before!.pending, "0");
  t.is(before!.runs, "0");
  t.is(before!.lastRunAt, undefined);
  const delayMs = Number(before!.delayMs);
  t.true(delayMs > 0);

  const key = await client.createKey({ project: "purge", scope: "s", name: "n" });
  const deletedAt = Date.now();
  await client.deleteKey(key.id);
  const pending = (await client.getStatus()).purge!;
  // Asked right after the delete, well within the delay (unless this machine stalled for a whole delay).
  if (Date.now() - deletedAt < delayMs / 2) {
    t.is(pending.pending, "1");
    t.is(pending.runs, "0");
    t.true(Number(pending.oldestPendingMs) < delayMs);
  } else {
    t.log(`GetStatus came ${Date.now() - deletedAt} ms after the delete; pending not checked`);
  }

  // Bounded: the purge starts within the delay; allow the run itself some seconds on a loaded machine.
  let after = pending;
  for (let i = 0; i < 100 && (after.pending !== "0" || after.runs === "0"); i++) {
    await sleep(100);
    after = (await client.getStatus()).purge!;
  }
  t.is(after.pending, "0");
  t.is(after.oldestPendingMs, "0");
  t.true(Number(after.runs) >= 1);
  t.true(Number(after.purged) >= 1);
  t.is(after.failedRuns, "0");
  t.true(after.lastRunAt instanceof Date && after.lastRunAt.getTime() >= deletedAt);

  const json = await runCli(["status", "--json", ...peer.cliFlags()]);
  t.is(json.code, 0, json.stderr);
  const status = JSON.parse(json.text) as { purge?: Record<string, unknown> };
  t.like(status.purge, { pending: "0", oldestPendingMs: "0", failedRuns: "0", delayMs: String(delayMs) });
  t.true(Number(status.purge?.runs) >= 1);
  t.is(typeof status.purge?.lastRunAt, "string");

  const text = await runCli(["status", ...peer.cliFlags()]);
  t.is(text.code, 0, text.stderr);
  t.regex(text.text, new RegExp(`^purge pending +0; runs start within ${delayMs} ms$`, "m"));
  t.regex(text.text, /^purge runs +[1-9]\d* \([1-9]\d* values purged, 0 failed\)$/m);
  t.regex(text.text, /^purge last run +\d{4}-\d\d-\d\dT\S+Z \(\d+ ms\)$/m);
});
