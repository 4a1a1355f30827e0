/**
 * `npm run bench -- barbican`: the Barbican v1 REST API of one real peer, authenticated by a real
 * Keystone (both started here on 127.0.0.1, as in test/rest/openstack-clients.test.ts), measured
 * the way Barbican 15's own figures were (../shared/peers/README.md, notes/openstack.md):
 *
 * - store (`POST /v1/secrets/`, a 32-byte base64 payload) and payload read
 *   (`GET /v1/secrets/{id}/payload`) at concurrency 1 and 16, over HTTP on loopback (plain HTTP,
 *   as Barbican was measured; `--tls` for HTTPS), with one cached Keystone token, keep-alive;
 * - Castellan `get` of an unnamed key, sequential, with the HTTP requests each took to the key
 *   manager (Barbican 15: 2.9 gets/s, 15 requests each).
 *
 * Prints the figures beside Barbican 15's, then one JSON line.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { startKeystone } from "../helpers/keystone.js";
import { spawnPeer } from "../helpers/peer-process.js";
import { restCall } from "../helpers/rest-call.js";

const CASTELLAN_CLIENT = fileURLToPath(new URL("../../../test/rest/castellan-client.py", import.meta.url));

/** Barbican 15.0.1 on these machines (uWSGI, one process and thread, SQLite, simple_crypto, Keystone). */
const BARBICAN_15: Record<string, string> = {
  "store c1": "92 ops/s (p50 10.5 ms)",
  "store c16": "100-102 ops/s",
  "payload c1": "118-127 ops/s",
  "payload c16": "130-136 ops/s",
  "castellan-get c1": "2.9 gets/s, 15 requests per get",
};

interface CaseResult {
  op: "store" | "payload" | "castellan-get";
  concurrency: number;
  ops: number;
  seconds: number;
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  requestsPerOp?: number;
}

const WARMUP_OPS = 30;

export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ops: { type: "string" },
      seconds: { type: "string" },
      "castellan-gets": { type: "string" },
      tls: { type: "boolean" },
    },
    strict: true,
  });
  const opsMax = positiveInt("--ops", values.ops ?? "2000");
  const secondsMax = positiveInt("--seconds", values.seconds ?? "10");
  const castellanGets = positiveInt("--castellan-gets", values["castellan-gets"] ?? "50");
  const tls = values.tls === true;

  process.stdout.write("starting Keystone (keystone-manage, uWSGI) and a peer with a REST listener...\n");
  const keystone = await startKeystone();
  const results: CaseResult[] = [];
  let peer: Awaited<ReturnType<typeof spawnPeer>> | undefined;
  try {
    const service = await keystone.user("lockbox", "service", "admin");
    const user = await keystone.user("bench", "bench");
    peer = await spawnPeer({
      editConfig: async (config, dir) => {
        await fs.writeFile(join(dir, "keystone-password"), service.password, { mode: 0o600 });
        config.rest = {
          listen: "127.0.0.1:0",
          plainHttp: !tls,
          mtls: false,
          keystone: {
            url: keystone.url,
            serviceUser: "lockbox",
            servicePasswordFile: "keystone-password",
            serviceProject: "service",
          },
        };
      },
    });
    const base = `${tls ? "https" : "http"}://${peer.restAddress!}`;
    const ca = await fs.readFile(join(peer.dir, "ca.crt"), "utf8");
    const agent = tls
      ? new https.Agent({ ca, keepAlive: true, maxSockets: 64 })
      : new http.Agent({ keepAlive: true, maxSockets: 64 });
    const token = await keystone.token(user);
    const headers = { "X-Auth-Token": token };
    const stored: string[] = [];
    const store = async (): Promise<void> => {
      const r = await restCall(`${base}/v1/secrets/`, {
        method: "POST",
        agent,
        headers,
        json: {
          payload: randomBytes(32).toString("base64"),
          payload_content_type: "application/octet-stream",
          payload_content_encoding: "base64",
          secret_type: "symmetric",
          algorithm: "aes",
        },
      });
      if (r.status !== 201) throw new Error(`store: ${r.status}`);
      stored.push(new URL(r.json!.secret_ref as string).pathname);
    };
    let next = 0;
    const payload = async (): Promise<void> => {
      const path = stored[next++ % stored.length]!;
      const r = await restCall(`${base}${path}/payload`, {
        agent,
        headers: { ...headers, Accept: "application/octet-stream" },
      });
      if (r.status !== 200 || r.body.length !== 32) throw new Error(`payload: ${r.status}`);
    };
    for (const [op, fn] of [
      ["store", store],
      ["payload", payload],
    ] as const) {
      for (const concurrency of [1, 16]) {
        await run(fn, concurrency, WARMUP_OPS, 30);
        const r = await run(fn, concurrency, opsMax, secondsMax);
        results.push({ op, concurrency, ...r });
        report(results[results.length - 1]!);
      }
    }
    agent.destroy();

    // Castellan: an unnamed key from create_key, then `get` after `get`, as Nova attaches volumes.
    const spec = (steps: unknown[]) =>
      JSON.stringify({
        endpoint: base,
        ca: join(peer!.dir, "ca.crt"),
        auth_url: keystone.url,
        api_version: "v1",
        credential: { kind: "password", user: user.name, password: user.password, project: user.project },
        steps,
      });
    const [created] = await castellan(spec([{ op: "create_key", length: 256 }]));
    const [bench] = await castellan(spec([{ op: "bench_get", id: created!.id, count: castellanGets }]));
    const seconds = bench!.seconds!;
    results.push({
      op: "castellan-get",
      concurrency: 1,
      ops: castellanGets,
      seconds,
      opsPerSecond: castellanGets / seconds,
      p50Ms: (seconds * 1000) / castellanGets,
      p99Ms: NaN,
      errors: 0,
      requestsPerOp: bench!.requests / castellanGets,
    });
    report(results[results.length - 1]!);
  } finally {
    await peer?.teardown();
    await keystone.stop();
  }
  process.stdout.write(
    JSON.stringify({ bench: "barbican", transport: tls ? "https" : "http", node: process.version, results }) +
      "\n",
  );
}

function report(r: CaseResult): void {
  const key = `${r.op} c${r.concurrency}`;
  const extra = r.requestsPerOp !== undefined ? `, ${r.requestsPerOp.toFixed(1)} requests per get` : "";
  process.stdout.write(
    `${r.op.padEnd(13)} concurrency ${String(r.concurrency).padStart(2)}: ${r.opsPerSecond.toFixed(1).padStart(7)} ops/s` +
      `  p50 ${r.p50Ms.toFixed(2)} ms  p99 ${Number.isNaN(r.p99Ms) ? "-" : r.p99Ms.toFixed(2)} ms` +
      `  (${r.ops} ops, ${r.errors} errors${extra})   Barbican 15: ${BARBICAN_15[key] ?? "-"}\n`,
  );
}

function castellan(doc: string): Promise<{ id?: string; seconds?: number; requests: number }[]> {
  return new Promise((resolve, reject) => {
    execFile("/usr/bin/python3", [CASTELLAN_CLIENT, doc], { timeout: 600_000 }, (err, stdout, stderr) => {
      if (err !== null) return reject(new Error(`castellan client failed: ${stderr.slice(-2000)}`));
      resolve((JSON.parse(stdout.trim().split("\n").pop()!) as { results: never[] }).results);
    });
  });
}

/** Runs `op` with `concurrency` workers until `opsMax` calls are done or `secondsMax` have passed. */
async function run(
  op: () => Promise<unknown>,
  concurrency: number,
  opsMax: number,
  secondsMax: number,
): Promise<Omit<CaseResult, "op" | "concurrency">> {
  const latenciesMs: number[] = [];
  let started = 0;
  let errors = 0;
  const t0 = performance.now();
  const deadline = t0 + secondsMax * 1000;
  const worker = async (): Promise<void> => {
    while (started < opsMax && performance.now() < deadline) {
      started++;
      const s = performance.now();
      try {
        await op();
        latenciesMs.push(performance.now() - s);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  latenciesMs.sort((a, b) => a - b);
  return {
    ops: latenciesMs.length,
    seconds,
    opsPerSecond: latenciesMs.length / seconds,
    p50Ms: percentile(latenciesMs, 0.5),
    p99Ms: percentile(latenciesMs, 0.99),
    errors,
  };
}

function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

function positiveInt(flag: string, v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new Error(`${flag} must be a positive integer, got '${v}'`);
  return Number(v);
}
