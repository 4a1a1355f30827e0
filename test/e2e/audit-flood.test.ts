/**
 * Audit flood (issue 8 item 2) against a real peer process: 30 s of calls
 * without a certificate, as fast as a separate client process can send them.
 * The audit log grows by a bounded number of aggregate records (one per
 * source, operation and reason per window, with its count), not one record
 * per call, and a legitimate client's CreateKey p99 during the flood stays
 * within 3x its p99 just before it (asserted loosely: scheduling noise on a
 * shared machine is the enemy; the figures are printed for the report).
 */
import test from "ava";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";

import type { AuditEvent, LockboxClient } from "../../src/client/index.js";
import { spawnPeer } from "../helpers/peer-process.js";
import type { FloodResult } from "../helpers/unauthenticated-flood.js";

const FLOOD_MS = 30_000;
const BASELINE_MS = 6_000;
const CREATES_MAX = 2_000;
/** The peer writes each window of counted refusals after 10 s. */
const WINDOW_WAIT_MS = 11_000;
const FLOODER = fileURLToPath(new URL("../helpers/unauthenticated-flood.js", import.meta.url));

test("30 s of unauthenticated calls add a bounded number of aggregate audit records; CreateKey p99 stays within 3x", async (t) => {
  const peer = await spawnPeer();
  t.teardown(() => peer.teardown());
  const service = await peer.issueIdentity("vol-host", "service", ["p"]);
  const client = peer.client(service, { cache: false, attemptsMax: 1, deadlineMs: 10_000 });
  const admin = peer.client(peer.admin, { cache: false });
  for (let i = 0; i < 20; i++) await client.createKey({ project: "p", scope: "warm", name: `w${i}` });

  const cpu0 = cpuSeconds(peer.pid!);
  const t0 = Date.now();
  const before = await createLatencies(client, "before", BASELINE_MS);
  const cpuBefore = (cpuSeconds(peer.pid!) - cpu0) / ((Date.now() - t0) / 1000);
  const recordsBefore = await allEvents(admin);

  // The attacker would be another machine; on this one it runs at the lowest priority so that
  // its own CPU use (a spinning client) is not what the latency measures.
  const flooder = spawn(
    "nice",
    ["-n", "19", process.execPath, FLOODER, peer.address, peer.admin.ca, String(FLOOD_MS), "4", "32"],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  t.teardown(() => flooder.kill("SIGKILL"));
  let out = "";
  flooder.stdout.on("data", (b: Buffer) => (out += b.toString()));
  const flooded = new Promise<FloodResult>((resolve, reject) =>
    flooder.on("close", (code) =>
      code === 0 ? resolve(JSON.parse(out) as FloodResult) : reject(new Error(`flooder exited ${code}`)),
    ),
  );
  await new Promise((r) => setTimeout(r, 500)); // let the flood get going
  const cpu1 = cpuSeconds(peer.pid!);
  const t1 = Date.now();
  const during = await createLatencies(client, "during", FLOOD_MS - 1_000);
  const cpuDuring = (cpuSeconds(peer.pid!) - cpu1) / ((Date.now() - t1) / 1000);
  const result = await flooded;
  await new Promise((r) => setTimeout(r, WINDOW_WAIT_MS));

  const recordsAfter = await allEvents(admin);
  const added = recordsAfter.filter((e) => Number(e.sequence) > Number(recordsBefore.at(-1)?.sequence ?? 0));
  const aggregates = added.filter((e) => e.source !== undefined);
  const counted = aggregates.reduce((sum, e) => sum + Number(e.count), 0);
  const unauthenticated = result.codes.UNAUTHENTICATED ?? 0;
  const p99Before = percentile(before, 0.99);
  const p99During = percentile(during, 0.99);
  t.log(
    `flood: ${result.calls} calls in ${result.durationMs} ms (${JSON.stringify(result.codes)}); ` +
      `audit records added: ${added.length} (${aggregates.length} aggregates counting ${counted} refusals, ` +
      `${added.length - aggregates.length} single records of the legitimate client)`,
  );
  t.log(
    `CreateKey before: n=${before.length} p50=${fmt(percentile(before, 0.5))} p99=${fmt(p99Before)} ms; ` +
      `during: n=${during.length} p50=${fmt(percentile(during, 0.5))} p99=${fmt(p99During)} ms; ` +
      `peer CPU ${(cpuBefore * 100).toFixed(0)}% of a core before, ${(cpuDuring * 100).toFixed(0)}% during; ` +
      `load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(" ")}`,
  );
  t.true(result.calls > 1_000, `the flooder made ${result.calls} calls`);
  // Beyond 200 refusals a second, the source's connections without a certificate are closed and
  // refused for 10 s (edge-limits.ts): most calls of the flood then fail UNAVAILABLE at connect.
  t.true(unauthenticated >= 100, `the flood was answered UNAUTHENTICATED ${unauthenticated} times`);
  // Three windows of 10 s, each at most a few (source, operation, reason) aggregates.
  t.true(aggregates.length <= 30, `${aggregates.length} aggregate records`);
  t.true(counted >= unauthenticated, `aggregates count ${counted} of ${unauthenticated} refused calls`);
  t.true(
    added.every((e) => e.source !== undefined || e.identity === "vol-host" || e.identity === "admin"),
    "every single record is a legitimate client's",
  );
  t.true(during.length >= 100, `only ${during.length} creates during the flood`);
  // Loosely: a floor of 10 ms under the baseline p99 absorbs timer and scheduler noise.
  t.true(p99During <= 3 * Math.max(p99Before, 10), `p99 ${fmt(p99During)} ms vs ${fmt(p99Before)} ms before`);
});

async function createLatencies(client: LockboxClient, label: string, durationMs: number): Promise<number[]> {
  const out: number[] = [];
  const stopAt = Date.now() + durationMs;
  for (let i = 0; i < CREATES_MAX && Date.now() < stopAt; i++) {
    const t0 = performance.now();
    await client.createKey({ project: "p", scope: label, name: `k${i}` });
    out.push(performance.now() - t0);
    await new Promise((r) => setTimeout(r, 5));
  }
  return out;
}

async function allEvents(admin: LockboxClient): Promise<AuditEvent[]> {
  const events: AuditEvent[] = [];
  let token = "";
  for (let page = 0; page < 100; page++) {
    const res = await admin.listAuditEvents({ pageSize: 1000, pageToken: token });
    events.push(...res.items);
    if (res.nextPageToken === "") return events;
    token = res.nextPageToken;
  }
  throw new Error("audit log longer than 100 pages");
}

/** User plus system CPU time of a process, in seconds (/proc/PID/stat, 100 ticks a second). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

const fmt = (ms: number): string => ms.toFixed(1);
