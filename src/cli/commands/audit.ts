/**
 * `lockbox audit`: reads a peer's audit log (who, which key, which
 * operation, when, outcome; never key bytes) through AdminService, following
 * pages, and shows the most recent events.
 */
import type { AuditEvent } from "../../client/index.js";
import type { CliCommand } from "../command.js";
import { EXIT_OK } from "../command.js";
import {
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
  "",
  "Shows the most recent audit events of a peer, oldest first.",
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
          printJson({ events: recent, truncated });
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

function line(e: AuditEvent): string {
  return [
    e.time?.toISOString() ?? "-",
    `#${e.sequence}`,
    e.identity === "" ? "-" : e.identity,
    e.operation,
    e.keyId ?? "-",
    e.project ?? "-",
    // The status name says the same as the outcome for most events; show it only when it adds something.
    e.status === e.outcome || e.status === "" ? e.outcome : `${e.outcome} (${e.status})`,
    e.detail ?? "",
  ]
    .join("  ")
    .trimEnd();
}
