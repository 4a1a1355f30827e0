/**
 * A real peer process's log (its stderr): one JSON object per line with a level, a time, the peer
 * and a component; grpc-js's own lines come through the same logger (component "grpc"), never as
 * "E ..."/"D ..." text; refused calls are summed up in few lines, not one per call; and no key
 * material the test created appears anywhere in it, in any encoding. A CLI command shows none of
 * grpc-js's lines.
 */
import test from "ava";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";

import { isLockboxClientError } from "../../src/client/index.js";
import { spawnPeer } from "../helpers/peer-process.js";
import { runCli } from "../helpers/cli-process.js";
import { WARNING_CODE } from "../helpers/warning-on-signal.js";

/** Makes the peer emit a Node process warning on SIGUSR2. */
const WARNING_ON_SIGNAL = pathToFileURL(
  new URL("../helpers/warning-on-signal.js", import.meta.url).pathname,
).href;

const REFUSED_CALLS = 20;

test("the peer logs JSON lines with levels, routes grpc-js and Node's process warnings into them, sums refusals up and never logs key material", async (t) => {
  const peer = await spawnPeer({
    // grpc-js's server call tracer writes DEBUG lines for every call: they must arrive as JSON.
    env: {
      LOCKBOX_LOG_LEVEL: "debug",
      GRPC_VERBOSITY: "DEBUG",
      GRPC_TRACE: "server_call",
      NODE_OPTIONS: `--import=${WARNING_ON_SIGNAL}`,
    },
    configure: (config) => {
      config.log = { level: "info", refusedCallWindowMs: 500 };
    },
  });
  t.teardown(() => peer.teardown());
  const admin = peer.client(peer.admin, { cache: false });
  const materials: Buffer[] = [];
  for (let i = 0; i < 4; i++) {
    const key = await admin.createKey({ project: "logs", scope: `vol-${i}`, name: `k${i}`, bitLength: 256 });
    materials.push(Buffer.from((await admin.getKey(key.id)).material));
    if (i === 0) {
      await admin.deleteKey(key.id);
      const destroyed = await admin.getKey(key.id).catch((e: unknown) => e);
      t.true(isLockboxClientError(destroyed, "FAILED_PRECONDITION"));
    }
  }
  // A service identity calling the AdminService: refused (PERMISSION_DENIED), each one audited,
  // but summed up in the log.
  const service = await peer.issueIdentity("svc-logs", "service", ["logs"]);
  const client = peer.client(service, { cache: false });
  for (let i = 0; i < REFUSED_CALLS; i++) {
    const refused = await client.getStatus().catch((e: unknown) => e);
    t.true(isLockboxClientError(refused, "PERMISSION_DENIED"));
  }
  // A Node process warning (Node prints those as plain text on stderr by default).
  process.kill(peer.pid!, "SIGUSR2");
  // The summary comes at the end of the window (500 ms): wait for it, bounded.
  for (let i = 0; i < 50 && !(await peer.log()).includes('"calls_refused"'); i++) await sleep(100);
  await peer.kill("SIGTERM");

  const text = await peer.log();
  const events: Record<string, unknown>[] = [];
  for (const line of text.split("\n").filter((l) => l !== "")) {
    let value: Record<string, unknown>;
    try {
      value = JSON.parse(line) as Record<string, unknown>;
    } catch {
      t.fail(`not a JSON line: ${line.slice(0, 200)}`);
      continue;
    }
    if (value.event === "ready") continue; // serve's ready line on stdout
    t.is(typeof value.level, "string", line.slice(0, 200));
    t.regex(String(value.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    t.is(value.peer, "peer-1");
    t.is(typeof value.component, "string");
    t.is(typeof value.msg, "string");
    events.push(value);
  }
  t.true(
    events.some((e) => e.component === "master-key" && e.level === "warn"),
    "the development protector's warning is a warn event",
  );
  t.true(
    events.some((e) => e.component === "grpc" && e.level === "debug"),
    "grpc-js's trace lines arrive as debug events of component grpc",
  );
  t.false(/^[EID] /m.test(text), "no raw grpc-js line");
  t.true(
    events.some((e) => e.component === "node" && e.level === "warn" && e.code === WARNING_CODE),
    "Node's process warning is a warn event of component node",
  );
  t.true(events.some((e) => e.component === "peer" && e.msg === "lockbox: stopped"));

  const summaries = events.filter((e) => e.event === "calls_refused");
  t.true(summaries.length >= 1 && summaries.length < REFUSED_CALLS, `${summaries.length} summary lines`);
  const refused = summaries.reduce(
    (n, e) => n + ((e.byStatus as Record<string, number>).PERMISSION_DENIED ?? 0),
    0,
  );
  t.is(refused, REFUSED_CALLS, "every refused call is counted once");
  for (const s of summaries) {
    t.is(s.level, "warn");
    t.true(Object.keys(s.byMethod as object).includes("/lockbox.v1.AdminService/GetStatus"));
  }

  // The peer is down now: a CLI call to it fails in the CLI's own words, and none of grpc-js's
  // trace lines reach its output.
  const cli = await runCli(["status", ...peer.cliFlags()], {
    env: { GRPC_VERBOSITY: "DEBUG", GRPC_TRACE: "all" },
  });
  t.not(cli.code, 0);
  t.regex(cli.stderr, /UNAVAILABLE/);
  t.false(/^[EID] /m.test(cli.stderr + cli.text), cli.stderr.slice(0, 500));

  for (const m of materials) {
    for (const encoded of [
      m.toString("hex"),
      m.toString("hex").toUpperCase(),
      m.toString("base64"),
      m.toString("base64url"),
    ]) {
      t.false(text.includes(encoded), "key material in the log");
    }
    t.false(Buffer.from(text, "utf8").includes(m), "raw key bytes in the log");
  }
});
