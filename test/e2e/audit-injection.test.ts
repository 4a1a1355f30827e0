/**
 * Audit injection (issue 8 item 3) against a real peer process: request
 * fields holding escape sequences, carriage returns and newlines, crafted to
 * forge an "admin DeleteKey ok" line, show up escaped in `lockbox audit` and
 * in `--json`; then, with the peer stopped, `lockbox audit verify` passes on
 * the intact log and names the first bad record after one is edited on disk,
 * and after one is removed.
 */
import test from "ava";
import { join } from "node:path";

import { recordKey } from "../../src/audit/audit-chain.js";
import { openPeerStore } from "../../src/store/peer-store.js";
import { runCli } from "../helpers/cli-process.js";
import { spawnPeer } from "../helpers/peer-process.js";

const FORGED = "\u001b[2K\r2026-01-01T00:00:00.000Z  #1  admin  DeleteKey  -  -  ok\n\u001b]0;pwned\u0007";
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;

test("escape sequences and newlines in request fields are shown escaped; audit verify names an edited and a removed record", async (t) => {
  const peer = await spawnPeer();
  t.teardown(() => peer.teardown());
  const client = peer.client(peer.admin, { cache: false, attemptsMax: 1 });
  // Each lands in the audit log: the id (GetKey), the project (CreateKey), and the details
  // of the refusals that quote them.
  await t.throwsAsync(client.getKey(FORGED));
  await t.throwsAsync(client.getKeyMetadata(`${FORGED}-2`));
  await t.throwsAsync(client.createKey({ project: FORGED, scope: "s", name: FORGED }));
  await client.createKey({ project: "p", scope: "s", name: "ok" });

  const text = await runCli(["audit", ...peer.cliFlags()]);
  t.is(text.code, 0, text.stderr);
  t.false(CONTROL.test(text.text), `raw control characters in: ${JSON.stringify(text.text)}`);
  const lines = text.text.trimEnd().split("\n");
  // A header row, then the four calls.
  t.is(lines.length, 5, text.text);
  t.regex(lines[0]!, /^TIME +SEQ +IDENTITY +OPERATION/);
  t.false(
    lines.some((l) => l.startsWith("2026-01-01T00:00:00.000Z")),
    "no line of the output is the forged one",
  );
  t.true(text.text.includes("\\x1b[2K\\x0d2026-01-01T00:00:00.000Z"), text.text);
  t.true(text.text.includes("\\x0a\\x1b]0;pwned\\x07"), text.text);

  const json = await runCli(["audit", ...peer.cliFlags(), "--json"]);
  t.is(json.code, 0, json.stderr);
  t.false(CONTROL.test(json.text), "the JSON output carries no control character either");
  const events = (JSON.parse(json.text) as { events: Record<string, string>[] }).events;
  t.is(events.length, 5, "the four calls and the first `lockbox audit`'s ListAuditEvents");
  t.true(
    events.some((e) => e.keyId?.startsWith("\\x1b[2K\\x0d")),
    JSON.stringify(events.map((e) => e.keyId)),
  );
  for (const e of events) {
    for (const v of Object.values(e)) if (typeof v === "string") t.false(CONTROL.test(v) || v.includes("\n"));
  }

  // Offline, on the stopped peer's data directory.
  await peer.kill("SIGTERM");
  const verify = async () => runCli(["audit", "verify", "--dir", peer.dir]);
  const intact = await verify();
  t.is(intact.code, 0, intact.stdout.toString() + intact.stderr);
  t.regex(intact.text, /^audit log intact: 6 records \(#1\.\.#6\)/);

  const dataDir = join(peer.dir, "data");
  const original = await withStore(dataDir, async (store) => {
    const key = recordKey(2);
    const bytes = (await store.get("audit", key))!;
    const o = JSON.parse(Buffer.from(bytes).toString("utf8")) as Record<string, unknown>;
    o.identity = "someone-else";
    await store.write([{ type: "put", sublevel: "audit", key, value: Buffer.from(JSON.stringify(o)) }]);
    return bytes;
  });
  const edited = await verify();
  t.is(edited.code, 1);
  t.regex(edited.text, /^audit log damaged at record #2: record #2 was edited/);
  const editedJson = await runCli(["audit", "verify", "--dir", peer.dir, "--json"]);
  t.like(JSON.parse(editedJson.text), { ok: false, sequence: 2 });

  // Put it back: intact again; then remove record #3.
  await withStore(dataDir, (store) =>
    store.write([{ type: "put", sublevel: "audit", key: recordKey(2), value: original }]),
  );
  t.is((await verify()).code, 0);
  await withStore(dataDir, (store) => store.write([{ type: "del", sublevel: "audit", key: recordKey(3) }]));
  const removed = await verify();
  t.is(removed.code, 1);
  t.regex(removed.text, /^audit log damaged at record #3: record #3 is missing/);
});

async function withStore<T>(
  dir: string,
  body: (store: Awaited<ReturnType<typeof openPeerStore>>) => Promise<T>,
) {
  const store = await openPeerStore(dir);
  try {
    return await body(store);
  } finally {
    await store.close();
  }
}
