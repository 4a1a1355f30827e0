/**
 * `lockbox status`: what a peer is and how it holds the master key. A peer
 * whose master key sits in the development file says so loudly: that file is
 * for trying lockbox out, never for keys that matter.
 */
import type { PeerStatus, PurgeStatus } from "../../client/index.js";
import { defineCommand } from "../cli-definition.js";
import { EXIT_OK } from "../command.js";
import { clientFrom, connectionSettings } from "../client-options.js";
import { emitRecord } from "../output.js";

export const DEVELOPMENT_PROTECTOR = "development-file";

export const command = defineCommand({
  name: "status",
  summary: "show what a peer is and how it holds the master key",
  description:
    "Shows a peer's id, cluster, seal state, master key protector and epoch, key count, its raft node,\n" +
    "and the purge of destroyed material (pending values, the oldest one's wait, runs).",
  options: [],
  connection: true,
  output: true,
  async run(args) {
    const client = await clientFrom(connectionSettings(args));
    try {
      const status = await client.getStatus();
      const development = status.masterKeyProtector === DEVELOPMENT_PROTECTOR;
      emitRecord({ ...status, developmentMasterKey: development }, () => render(status, development));
      if (development) {
        process.stderr.write(
          "WARNING: this peer's master key is in a DEVELOPMENT FILE, not sealed to a TPM. NOT FOR PRODUCTION.\n",
        );
      }
      return EXIT_OK;
    } finally {
      client.close();
    }
  },
});

function render(s: PeerStatus, development: boolean): string {
  const protector = development ? `${s.masterKeyProtector}  <-- NOT FOR PRODUCTION` : s.masterKeyProtector;
  const rows: [string, string][] = [
    ["peer", s.peerId],
    ["cluster", s.clusterId],
    ["version", s.version],
    ["seal state", s.sealState],
    ["master key protector", protector],
    ["master key epoch", String(s.masterKeyEpoch)],
    ["started", s.startedAt?.toISOString() ?? "-"],
    ["keys", s.keyCount],
    ["partition power", String(s.partitionPower)],
  ];
  if (s.raft !== undefined) {
    const r = s.raft;
    rows.push(
      ["raft role", r.role],
      ["raft leader", r.leader === "" ? "(none known)" : r.leader],
      ["raft term", r.term],
      ["raft commit / applied", `${r.commit} / ${r.applied}`],
      ["raft voters", r.voters.length === 0 ? "(none: not a member yet)" : r.voters.join(", ")],
      ["raft learners", r.learners.length === 0 ? "-" : r.learners.join(", ")],
    );
  }
  if (s.attestation !== undefined) {
    const a = s.attestation;
    rows.push([
      "attestation",
      a.fenced
        ? `FENCED: ${a.reason}`
        : a.memberState === "active"
          ? "attested (member active)"
          : a.memberState === ""
            ? "(not a member yet)"
            : `member ${a.memberState}${a.reason === "" ? "" : `: ${a.reason}`}`,
    ]);
  }
  if (s.purge !== undefined) rows.push(...purgeRows(s.purge));
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n") + "\n";
}

/** The purge of destroyed material: what waits and for how long, then what runs have done. */
function purgeRows(p: PurgeStatus): [string, string][] {
  const waiting = p.pending === "0" ? "0" : `${p.pending} (oldest waiting ${p.oldestPendingMs} ms)`;
  const last = p.lastRunAt === undefined ? "none yet" : `${p.lastRunAt.toISOString()} (${p.lastRunMs} ms)`;
  return [
    ["purge pending", `${waiting}; runs start within ${p.delayMs} ms`],
    ["purge runs", `${p.runs} (${p.purged} values purged, ${p.failedRuns} failed)`],
    ["purge last run", last],
  ];
}
