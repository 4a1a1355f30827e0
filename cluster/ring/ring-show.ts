/**
 * The text of `lockbox ring show`: the ring's shape, its balance per peer and its dispersion per
 * zone, from the reports in ring-report.ts. Pure, so the CLI only prints it and tests read it.
 * Peer ids and zones cannot hold control characters (ring-state.ts), so printing them is safe.
 */
import type { Ring } from "./ring.js";

export function formatRingShow(ring: Ring, minPartHours: number): string[] {
  const balance = ring.balanceReport();
  const dispersion = ring.dispersionReport();
  const lines = [
    `ring version ${ring.version}: ${ring.partitions} partitions (power ${ring.partPower}), ` +
      `${ring.replicas} replicas, min_part_hours ${minPartHours}`,
    `balance ${balance.balance.toFixed(2)}%  dispersion ${dispersion.dispersion.toFixed(2)}% ` +
      `(${dispersion.partsAtRisk} partition-replicas beyond ${dispersion.maxReplicasPerZone} per zone; ` +
      `every partition spans at least ${dispersion.minZonesPerPartition} zones)`,
  ];
  const rows = balance.peers.map((p) => [
    p.id,
    p.zone,
    String(p.weight),
    String(p.parts),
    p.wanted.toFixed(1),
    `${p.balance >= 0 ? "+" : ""}${p.balance.toFixed(2)}%`,
  ]);
  lines.push(...table(["peer", "zone", "weight", "parts", "wanted", "balance"], rows));
  for (const z of dispersion.zones) {
    const counts = z.byReplicas.map((n, k) => `${k}:${n}`).join(" ");
    lines.push(`zone ${z.zone}: partitions by replicas held ${counts}`);
  }
  return lines;
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)];
}
