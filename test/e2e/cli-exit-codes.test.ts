/**
 * Each exit-code class of the CLI against a real peer process: usage (a bad call,
 * and the peer's INVALID_ARGUMENT), not found, permission (a service identity
 * asking for the audit log; a CA that does not sign the peer's certificate),
 * data loss (a stored record edited on disk, as record-authentication.test.ts
 * does) and unavailable (the peer stopped). Under --json each error is one JSON
 * line on stderr carrying its class.
 */
import test from "ava";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Level } from "level";

import {
  EXIT_DATA_LOSS,
  EXIT_NOT_FOUND,
  EXIT_PERMISSION,
  EXIT_UNAVAILABLE,
  EXIT_USAGE,
} from "../../src/cli/exit-codes.js";
import { runCli, runCliJson } from "../helpers/cli-process.js";
import { spawnPeer, type PeerProcess } from "../helpers/peer-process.js";

let peer: PeerProcess;
let other: PeerProcess;
test.before(async () => {
  peer = await spawnPeer();
  other = await spawnPeer();
});
test.after.always(async () => {
  await peer?.teardown();
  await other?.teardown();
});

interface ErrorLine {
  error: { code: string; exitClass: string; exitCode: number; message: string; hint?: string };
}
const errorOf = (stderr: string): ErrorLine["error"] => (JSON.parse(stderr.trim()) as ErrorLine).error;

test.serial("usage: a missing option, and the peer's INVALID_ARGUMENT, exit 2", async (t) => {
  const missing = await runCli(["key", "create", "--project", "p", "--scope", "s", ...peer.cliFlags()]);
  t.is(missing.code, EXIT_USAGE);
  const past = await runCli([
    ...["key", "create", "--project", "p", "--scope", "s", "--name", "n"],
    ...["--expires-at", "2001-01-01T00:00:00Z", "--json", ...peer.cliFlags()],
  ]);
  t.is(past.code, EXIT_USAGE, past.stderr);
  t.like(errorOf(past.stderr), { code: "INVALID_ARGUMENT", exitClass: "usage" });
});

test.serial("not found: a key id that names no key exits 3", async (t) => {
  const r = await runCli([
    "key",
    "meta",
    "0b6f2d1e-8a3c-8e5f-9d7b-1c2a3e4f5a6b",
    "--json",
    ...peer.cliFlags(),
  ]);
  t.is(r.code, EXIT_NOT_FOUND, r.stderr);
  t.like(errorOf(r.stderr), { code: "NOT_FOUND", exitClass: "not-found", exitCode: EXIT_NOT_FOUND });
});

test.serial("permission: a service identity reading the audit log, and a wrong CA, exit 4", async (t) => {
  const svc = await peer.issueIdentity("svc-exit", "service", ["p"]);
  const denied = await runCli(["audit", "--json", ...peer.cliFlags(svc)]);
  t.is(denied.code, EXIT_PERMISSION, denied.stderr);
  t.like(errorOf(denied.stderr), { code: "PERMISSION_DENIED", exitClass: "permission" });
  // The other cluster's CA does not sign this peer's certificate: a trust problem naming --ca, not an outage.
  const flags = peer.cliFlags();
  const wrongCa = flags.map((f, i) => (flags[i - 1] === "--ca" ? other.admin.ca : f));
  t.not(wrongCa.join(" "), flags.join(" "));
  const r = await runCli(["status", "--json", ...wrongCa]);
  t.is(r.code, EXIT_PERMISSION, r.stderr);
  const e = errorOf(r.stderr);
  t.is(e.code, "TLS_TRUST");
  t.true(e.hint!.includes("--ca"));
  const text = await runCli(["status", ...wrongCa]);
  t.is(text.code, EXIT_PERMISSION);
  t.true(text.stderr.includes(other.admin.ca), text.stderr);
});

test.serial(
  "data loss: a stored record edited on disk exits 6; then unavailable: the peer stopped exits 5",
  async (t) => {
    const key = await runCliJson<{ id: string }>([
      ...["key", "create", "--project", "p", "--scope", "s", "--name", "victim", "--json"],
      ...peer.cliFlags(),
    ]);
    const flags = peer.cliFlags();
    await peer.kill("SIGKILL");
    const down = await runCli(["key", "meta", key.id, "--json", ...flags]);
    t.is(down.code, EXIT_UNAVAILABLE, down.stderr);
    t.like(errorOf(down.stderr), { exitClass: "unavailable" });
    const downText = await runCli(["key", "meta", key.id, ...flags]);
    t.is(downText.code, EXIT_UNAVAILABLE);
    t.true(downText.stderr.includes("hint:"), downText.stderr);

    const db = new Level<string, Buffer>(join(peer.dir, "data"), {
      keyEncoding: "utf8",
      valueEncoding: "buffer",
    });
    await db.open();
    try {
      const records = db.sublevel<string, Buffer>("records", {
        keyEncoding: "utf8",
        valueEncoding: "buffer",
      });
      const k = (await records.keys().all()).find((x) => x.endsWith(`/${key.id}`))!;
      const r = JSON.parse((await records.get(k))!.toString("utf8")) as Record<string, unknown>;
      r.name = "renamed";
      await records.put(k, Buffer.from(JSON.stringify(r)));
    } finally {
      await db.close();
    }
    await peer.restart();
    const lost = await runCli(["key", "meta", key.id, "--json", ...peer.cliFlags()]);
    t.is(lost.code, EXIT_DATA_LOSS, lost.stderr);
    t.like(errorOf(lost.stderr), { code: "DATA_LOSS", exitClass: "data-loss" });
  },
);

test.serial("a taken port: serve names the port and says what to do, also as JSON", async (t) => {
  const dir = await fs.mkdtemp(join(tmpdir(), "lockbox-taken-port-"));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  t.is((await runCli(["init", "--dir", join(dir, "c")])).code, 0);
  // `other` is running, so its address is a port in use.
  const r = await runCli(["serve", "--dir", join(dir, "c"), "--listen", other.address, "--json"]);
  t.is(r.code, 1, r.stderr);
  const line = r.stderr.split("\n").find((l) => l.startsWith('{"error"'));
  t.truthy(line, r.stderr);
  const e = (JSON.parse(line!) as ErrorLine).error;
  t.is(e.code, "EADDRINUSE");
  t.true(e.message.includes(other.address), e.message);
  t.true(e.hint!.includes("--listen"), e.hint);
});
