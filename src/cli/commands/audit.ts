/**
 * `lockbox audit`: reads a peer's audit log (who, which key, which
 * operation, when, outcome; never key bytes) through AdminService, following
 * pages, and shows the most recent events. Every field is shown through
 * terminalSafe(): the log stores client text escaped, and nothing a client
 * sent can reach the terminal as a control character either way.
 *
 * `lockbox audit verify --dir DIR` checks the hash chain of a stopped peer's
 * log offline, straight from its data directory, and names the first bad
 * record.
 */
import { resolve } from "node:path";
import { terminalSafe } from "../../audit/audit-text.js";
import type { AuditEvent } from "../../client/index.js";
import type { CliCommand } from "../command.js";
import { EXIT_FAILURE, EXIT_OK } from "../command.js";
import {
  dirFlag,
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  boolFlag,
  clientFrom,
  connectionSettings,
  intFlag,
  parseCommandArgs,
  printJson,
  runGuarded,
  stringFlag,
} from "../client-options.js";

const USAGE = [
  "usage: lockbox audit [--key ID] [--identity NAME] [--limit N] [connection] [--json]",
  "       lockbox audit verify --dir DIR [--json]",
  "",
  "Shows the most recent audit events of a peer, oldest first. Client-supplied text",
  "is shown escaped (\\xNN for control characters, a backslash doubled).",
  "",
  "verify checks the audit log's hash chain in DIR (the directory `lockbox init` made)",
  "with the peer stopped, and names the first record that was edited or removed.",
  "Exit 0 when intact, 1 when damaged.",
  "",
  "options:",
  "  --key ID               only events of this key (the client key file is --client-key here)",
  "  --identity NAME        only events of this caller",
  "  --limit N              at most N events, the most recent (default 100, at most 100000)",
  '  --json                 print {"events": [...]} as one JSON line',
  "",
  CONNECTION_HELP,
].join("\n");

/** Pages read before stopping: the log is read oldest first, so this bounds the walk. */
const PAGES_MAX = 1000;
const PAGE_SIZE = 1000;

export const command: CliCommand = {
  name: "audit",
  summary: "read a peer's audit log",
  run(argv) {
    if (argv[0] === "verify") return runGuarded("lockbox audit verify", USAGE, () => verify(argv.slice(1)));
    return runGuarded("lockbox audit", USAGE, async () => {
      const args = parseCommandArgs(
        argv,
        {
          ...CONNECTION_OPTIONS,
          key: { type: "string" },
          identity: { type: "string" },
          limit: { type: "string" },
          json: { type: "boolean" },
          help: { type: "boolean", short: "h" },
        },
        0,
      );
      if (boolFlag(args, "help")) {
        process.stdout.write(USAGE + "\n");
        return EXIT_OK;
      }
      const limit = intFlag(args, "limit", 1, 100_000) ?? 100;
      // Here --key is the key id filter, so the client key file comes from --client-key, env or --dir.
      const keyId = stringFlag(args, "key") ?? "";
      const client = await clientFrom(
        connectionSettings({ ...args, values: { ...args.values, key: undefined } }),
      );
      try {
        const recent: AuditEvent[] = [];
        let token = "";
        let truncated = true;
        for (let page = 0; page < PAGES_MAX; page++) {
          const res = await client.listAuditEvents({
            keyId,
            identity: stringFlag(args, "identity") ?? "",
            pageSize: PAGE_SIZE,
            pageToken: token,
          });
          recent.push(...res.items);
          if (recent.length > limit) recent.splice(0, recent.length - limit);
          if (res.nextPageToken === "") {
            truncated = false;
            break;
          }
          token = res.nextPageToken;
        }
        if (boolFlag(args, "json")) {
          printJson({ events: recent.map(safeEvent), truncated });
        } else {
          for (const e of recent) process.stdout.write(line(e) + "\n");
          if (truncated) process.stdout.write(`(stopped after ${PAGES_MAX} pages)\n`);
        }
        return EXIT_OK;
      } finally {
        client.close();
      }
    });
  },
};

async function verify(argv: string[]): Promise<number> {
  const args = parseCommandArgs(
    argv,
    { dir: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } },
    0,
  );
  if (boolFlag(args, "help")) {
    process.stdout.write(USAGE + "\n");
    return EXIT_OK;
  }
  const dir = resolve(dirFlag(args));
  // Loaded only here: reading LevelDB is this subcommand's business alone.
  const { loadPeerConfig, resolvePeerPath } = await import("../../config/peer-config.js");
  const { openPeerStore } = await import("../../store/peer-store.js");
  const { verifyAuditLog } = await import("../../audit/audit-log.js");
  const config = await loadPeerConfig(dir);
  const store = await openPeerStore(resolvePeerPath(dir, config, "data"));
  try {
    const verdict = await verifyAuditLog(store);
    if (boolFlag(args, "json")) printJson(verdict);
    else if (verdict.ok) {
      const range = verdict.records === 0 ? "" : ` (#${verdict.first}..#${verdict.last})`;
      const dropped = verdict.dropped > 0 ? `; ${verdict.dropped} older records dropped by retention` : "";
      process.stdout.write(`audit log intact: ${verdict.records} records${range}${dropped}\n`);
    } else {
      process.stdout.write(
        `audit log damaged at record #${verdict.sequence}: ${terminalSafe(verdict.problem)}\n`,
      );
    }
    return verdict.ok ? EXIT_OK : EXIT_FAILURE;
  } finally {
    await store.close();
  }
}

/** Every string of an event, terminal-safe (for --json too: a reader may print the values). */
function safeEvent(e: AuditEvent): AuditEvent {
  return Object.fromEntries(
    Object.entries(e).map(([k, v]) => [k, typeof v === "string" ? terminalSafe(v) : v]),
  ) as unknown as AuditEvent;
}

function line(e: AuditEvent): string {
  const count = e.count !== undefined && e.count !== "1" ? `x${e.count}` : "";
  return [
    e.time?.toISOString() ?? "-",
    `#${e.sequence}`,
    e.identity === "" ? "-" : e.identity,
    e.operation,
    e.keyId ?? "-",
    e.project ?? "-",
    // The status name says the same as the outcome for most events; show it only when it adds something.
    e.status === e.outcome || e.status === "" ? e.outcome : `${e.outcome} (${e.status})`,
    count,
    e.source === undefined ? "" : `from ${e.source}`,
    e.detail ?? "",
  ]
    .filter((f) => f !== "")
    .map(terminalSafe)
    .join("  ")
    .trimEnd();
}
