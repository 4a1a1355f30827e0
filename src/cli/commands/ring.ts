/**
 * `lockbox ring show | status`: the ring in the control state (DESIGN §4, issue 10 items 1 and 6).
 * `show` prints its shape, the balance per peer and the dispersion per zone (cluster/ring/ring-show.ts);
 * `status` prints the ring version the peer routes by, what the last ring change moved, and the
 * partitions the peer is streaming in (received / receiving, records, bytes, rate), with its
 * replication counters. Both read AdminService.GetRing on the peer called.
 */
import { clusterCommand } from "./cluster-call.js";

type RingView = Record<string, unknown> & { version?: string | number; show?: string[] };

const n = (v: unknown): string => (v === undefined || v === null ? "0" : String(v));

export const command = clusterCommand("ring", "show the ring and the progress of its rebalance", {
  show: {
    synopsis: "",
    summary: "the ring: partitions, replicas, balance per peer, dispersion per zone",
    flags: [],
    options: {},
    async run(client) {
      const res = await client.adminCall<RingView>("GetRing", {});
      const text =
        Number(res.version ?? 0) === 0
          ? ["no ring: replication is off, or the first ring is not built yet"]
          : (res.show ?? []);
      return { json: res, text };
    },
  },
  status: {
    synopsis: "",
    summary: "this peer's ring version, partitions moving to it, bytes moved and rate",
    flags: [],
    options: {},
    async run(client) {
      const r = await client.adminCall<RingView>("GetRing", {});
      const rate = Number(r.bytes_per_second ?? 0);
      const rows: [string, string][] = [
        ["ring version (committed)", n(r.version)],
        ["ring version (routed by)", n(r.local_version)],
        ["partition-replicas moved by the last change", n(r.partition_replicas_moved)],
        [
          "partitions received / receiving",
          `${n(r.partitions_received)} / ${n(r.partitions_receiving)} (remaining ${
            Number(r.partitions_receiving ?? 0) - Number(r.partitions_received ?? 0)
          })`,
        ],
        ["records / bytes received", `${n(r.records_received)} / ${n(r.bytes_received)}`],
        [
          "partitions handed over / to hand over",
          `${n(r.partitions_given)} / ${n(r.partitions_giving)} (records ${n(r.records_given)}, bytes ${n(r.bytes_given)})`,
        ],
        ["rate", `${rate.toFixed(0)} bytes/s`],
        ["partitions quarantined", n(r.partitions_quarantined)],
        [
          "anti-entropy passes / records pushed",
          `${n(r.anti_entropy_passes)} / ${n(r.anti_entropy_records_pushed)}`,
        ],
        ["handoff copies delivered", n(r.handoff_delivered)],
        ["writes acknowledged / unavailable", `${n(r.writes_acked)} / ${n(r.writes_unavailable)}`],
        ["reads / unavailable", `${n(r.reads)} / ${n(r.reads_unavailable)}`],
      ];
      const width = Math.max(...rows.map(([k]) => k.length));
      return { json: r, text: rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`) };
    },
  },
});
