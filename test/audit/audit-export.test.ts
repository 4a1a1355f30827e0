/**
 * The audit log's copy for a SIEM, from a real peer process: every record it stores also arrives
 * as one JSON line in audit.exportFile and as one RFC 5424 message on a UDP syslog socket, in
 * sequence order, with the same fields and a hash chain that links; no key material in either.
 */
import test from "ava";
import { createSocket } from "node:dgram";
import { promises as fs } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import { isLockboxClientError } from "../../src/client/index.js";
import { spawnPeer } from "../helpers/peer-process.js";

interface Exported {
  type: string;
  peer: string;
  sequence: number;
  operation: string;
  status: string;
  keyId: string;
  identity: string;
  prev: string;
  hash: string;
}

test("every audit record is also exported as a JSON line to a file and as a syslog message over UDP", async (t) => {
  const syslog = createSocket("udp4");
  const messages: string[] = [];
  syslog.on("message", (m) => messages.push(m.toString("utf8")));
  await new Promise<void>((resolve) => syslog.bind(0, "127.0.0.1", resolve));
  t.teardown(() => syslog.close());
  const port = (syslog.address() as AddressInfo).port;

  const peer = await spawnPeer({
    configure: (config) => {
      (config.audit as Record<string, unknown>).exportFile = "audit-export.jsonl";
      (config.audit as Record<string, unknown>).exportSyslog = `udp:127.0.0.1:${port}`;
    },
  });
  t.teardown(() => peer.teardown());
  const admin = peer.client(peer.admin, { cache: false });
  const key = await admin.createKey({ project: "siem", scope: "v", name: "k", bitLength: 256 });
  const material = Buffer.from((await admin.getKey(key.id)).material);
  const missing = await admin.getKey("00000000-0000-8000-8000-000000000000").catch((e: unknown) => e);
  t.true(isLockboxClientError(missing, "NOT_FOUND"));
  const stored = (await admin.listAuditEvents({ pageSize: 100 })).items;
  t.true(stored.length >= 3);
  const file = join(peer.dir, "audit-export.jsonl");
  // The listing itself is audited after it answered: wait (bounded) for its record too.
  for (let i = 0; i < 50 && messages.length < stored.length + 1; i++) await sleep(100);
  await peer.kill("SIGTERM");

  const stat = await fs.stat(file);
  t.is(stat.mode & 0o777, 0o600);
  const text = await fs.readFile(file, "utf8");
  const lines = text
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Exported);
  t.true(lines.length >= stored.length + 1, `${lines.length} exported, ${stored.length} listed before`);
  for (const [i, e] of stored.entries()) {
    t.like(lines[i], {
      type: "lockbox.audit",
      peer: "peer-1",
      sequence: Number(e.sequence),
      operation: e.operation,
      status: e.status,
      keyId: e.keyId,
      identity: e.identity,
    });
  }
  t.like(
    lines.find((l) => l.operation === "GetKey" && l.status === "NOT_FOUND"),
    { keyId: "00000000-0000-8000-8000-000000000000" },
  );
  for (let i = 1; i < lines.length; i++) {
    t.is(lines[i]!.sequence, lines[i - 1]!.sequence + 1, "in sequence, none missing");
    t.is(lines[i]!.prev, lines[i - 1]!.hash, "the chain links");
  }

  t.is(messages.length, lines.length);
  for (const [i, m] of messages.entries()) {
    const parsed = /^<(\d+)>1 (\S+) (\S+) lockbox (\d+) audit - (\{.*\})$/.exec(m);
    if (parsed === null) {
      t.fail(`not an RFC 5424 message: ${m.slice(0, 200)}`);
      continue;
    }
    const body = JSON.parse(parsed[5]!) as Exported;
    t.deepEqual(body, lines[i]);
    t.is(Number(parsed[1]), body.status === "OK" ? 85 : 84, "authpriv.notice, or .warning when refused");
  }

  for (const encoded of [material.toString("hex"), material.toString("base64")]) {
    t.false(text.includes(encoded));
    t.false(messages.some((m) => m.includes(encoded)));
  }
});
