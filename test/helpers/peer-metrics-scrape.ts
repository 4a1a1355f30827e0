/**
 * Reading a real peer process's /metrics: where it listens (from its `serve --json` ready line) and
 * one sample's value from a scrape. For the process tests and the cluster benchmark.
 */
import type { ClusterPeer } from "./cluster-processes.js";

/** One scrape of the peer's /metrics (Prometheus text). */
export async function scrapeMetrics(p: ClusterPeer): Promise<string> {
  const address = await metricsAddress(p);
  const res = await fetch(`http://${address}/metrics`, { signal: AbortSignal.timeout(5_000) });
  if (res.status !== 200) throw new Error(`${p.id} /metrics answered ${res.status}`);
  return res.text();
}

/** The value of the first sample named `name` (any labels) in a scrape; throws if there is none. */
export function sample(body: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(body);
  if (m === null) throw new Error(`no ${name} in the scrape`);
  return Number(m[1]);
}

/** The metrics listener from the last "ready" line of the peer's log (`serve --json`). */
export async function metricsAddress(p: ClusterPeer): Promise<string> {
  const lines = (await p.process.log()).split("\n").reverse();
  for (const line of lines) {
    if (!line.startsWith("{")) continue;
    try {
      const v = JSON.parse(line) as { event?: string; metricsAddress?: string };
      if (v.event === "ready" && typeof v.metricsAddress === "string") return v.metricsAddress;
    } catch {
      // another kind of log line
    }
  }
  throw new Error(`${p.id} logged no metrics address`);
}
