import test from "ava";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { loadPeerConfig, newPeerConfig, TUNABLES_DEFAULT } from "../../src/config/peer-config.js";
import { tunableDefaults } from "../../src/config/tunables.js";
import { isLockboxError } from "../../src/errors.js";

/** docs/configuration.md, seen from dist/test/config/. */
const DOC = fileURLToPath(new URL("../../../docs/configuration.md", import.meta.url));

function load(t: import("ava").ExecutionContext, config: unknown): ReturnType<typeof loadPeerConfig> {
  const dir = mkdtempSync(join(tmpdir(), "lockbox-tunables-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  return loadPeerConfig(dir);
}

test("a new config holds every tunable at its default", (t) => {
  const config = newPeerConfig({ peerId: "peer-1", listen: "127.0.0.1:7443" });
  for (const section of Object.keys(TUNABLES_DEFAULT) as (keyof typeof TUNABLES_DEFAULT)[]) {
    t.deepEqual(config[section], TUNABLES_DEFAULT[section], section);
  }
});

test("sections and keys left out of config.json take their defaults; given ones are kept", async (t) => {
  const {
    log: _log,
    metrics: _metrics,
    edge: _edge,
    audit: _audit,
    store: _store,
    keys: _keys,
    ...bare
  } = newPeerConfig({ peerId: "peer-1", listen: "127.0.0.1:7443" });
  const loaded = await load(t, { ...bare, edge: { connectionsMax: 7 }, metrics: { listen: "127.0.0.1:0" } });
  t.is(loaded.edge.connectionsMax, 7);
  t.is(loaded.edge.streamsPerConnectionMax, TUNABLES_DEFAULT.edge.streamsPerConnectionMax);
  t.is(loaded.metrics.listen, "127.0.0.1:0");
  t.deepEqual(loaded.audit, TUNABLES_DEFAULT.audit);
  t.deepEqual(loaded.log, TUNABLES_DEFAULT.log);
});

test("a wrong, misspelt or unknown tunable is refused, naming it", async (t) => {
  const good = newPeerConfig({ peerId: "peer-1", listen: "127.0.0.1:7443" });
  const cases: [string, unknown][] = [
    ["log.level", { ...good, log: { level: "loud" } }],
    ["log.refusedCallWindowMs", { ...good, log: { refusedCallWindowMs: 0 } }],
    ["metrics.listen", { ...good, metrics: { listen: "9100" } }],
    ["edge.connectionsMax", { ...good, edge: { connectionsMax: -1 } }],
    ["edge.conectionsMax", { ...good, edge: { conectionsMax: 5 } }],
    ["audit.exportSyslog", { ...good, audit: { exportSyslog: "tcp:1.2.3.4:514" } }],
    ["store.purgeDelayMs", { ...good, store: { purgeDelayMs: 1.5 } }],
    ["store.writeBufferBytes", { ...good, store: { writeBufferBytes: 4096 } }],
    ["store.writeBufferBytes", { ...good, store: { writeBufferBytes: 2 ** 31 } }],
    ["keys", { ...good, keys: [] }],
    ["attestation.intervalMs", { ...good, attestation: { intervalMs: 10 } }],
    ["attestation.timeoutMs", { ...good, attestation: { intervalMs: 1_000, timeoutMs: 1_000 } }],
    ["restLimits.bodyBytesMax", { ...good, restLimits: { bodyBytesMax: 0 } }],
    ["restLimits.keystoneCacheSize", { ...good, restLimits: { keystoneCacheSize: 5 } }],
    ["metric", { ...good, metric: {} }],
  ];
  for (const [field, value] of cases) {
    const err = await t.throwsAsync(load(t, value));
    t.true(isLockboxError(err, "FAILED_PRECONDITION"), field);
    t.is((err as { field?: string }).field, field);
    t.true(err!.message.includes(field), err!.message);
  }
});

test("docs/configuration.md lists every tunable with its default", (t) => {
  const doc = readFileSync(DOC, "utf8");
  for (const [name, value] of tunableDefaults()) {
    t.true(
      doc.includes(`| \`${name}\` | \`${JSON.stringify(value)}\` |`),
      `${name} = ${JSON.stringify(value)}`,
    );
  }
});
