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
import { defineCommand, dirOption, type LeafDefinition } from "../cli-definition.js";
import { EXIT_FAILURE, EXIT_OK } from "../command.js";
import {
  UsageError,
  clientFrom,
  connectionSettings,
  intFlag,
  dirFlag,
  stringFlag,
} from "../client-options.js";
import { emitList, emitRecord, type Column } from "../output.js";
import { auditEventJson } from "../proto-json.js";

/** Pages read before stopping: the log is read oldest first, so this bounds the walk. */
const PAGES_MAX = 1000;
const PAGE_SIZE = 1000;

const list: LeafDefinition = {
  name: "list",
  summary: "show the most recent audit events of a peer, oldest first",
  description:
    "Client-supplied text is shown escaped (\\xNN for control characters, a backslash doubled).\n" +
    "`lockbox audit` with no subcommand is the same as `lockbox audit list`.",
  options: [
    { flags: "--key-id <ID>", description: "only events of this key" },
    { flags: "--identity <NAME>", description: "only events of this caller" },
    {
      flags: "--limit <N>",
      description: "at most N events, the most recent (at most 100000)",
      default: "100",
    },
  ],
  connection: true,
  output: true,
  async run(args) {
    const limit = intFlag(args, "limit", 1, 100_000) ?? 100;
    const keyId = stringFlag(args, "key-id") ?? "";
    const client = await clientFrom(connectionSettings(args));
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
      const safe = recent.map(safeEvent);
      const records = safe.map(auditEventJson);
      emitList(
        safe,
        records,
        { events: records, truncated },
        AUDIT_COLUMNS,
        truncated ? `(stopped after ${PAGES_MAX} pages)` : undefined,
      );
      return EXIT_OK;
    } finally {
      client.close();
    }
  },
};

const verify: LeafDefinition = {
  name: "verify",
  summary: "check the audit log's hash chain of a stopped peer, offline",
  description:
    "Reads DIR (the directory `lockbox init` made) with the peer stopped and names the first record\n" +
    "that was edited or removed. Exit 0 when intact, 1 when damaged.",
  options: [dirOption("the peer's directory")],
  output: true,
  async run(args) {
    const dir = resolve(dirFlag(args));
    // Loaded only here: reading LevelDB is this subcommand's business alone.
    const { loadPeerConfig, resolvePeerPath } = await import("../../config/peer-config.js");
    const { openPeerStore } = await import("../../store/peer-store.js");
    const { verifyAuditLog } = await import("../../audit/audit-log.js");
    const config = await loadPeerConfig(dir);
    const store = await openPeerStore(resolvePeerPath(dir, config, "data"));
    try {
      const verdict = await verifyAuditLog(store);
      emitRecord(verdict, () => {
        if (verdict.ok) {
          const range = verdict.records === 0 ? "" : ` (#${verdict.first}..#${verdict.last})`;
          const dropped =
            verdict.dropped > 0 ? `; ${verdict.dropped} older records dropped by retention` : "";
          return `audit log intact: ${verdict.records} records${range}${dropped}\n`;
        }
        return `audit log damaged at record #${verdict.sequence}: ${terminalSafe(verdict.problem)}\n`;
      });
      return verdict.ok ? EXIT_OK : EXIT_FAILURE;
    } finally {
      await store.close();
    }
  },
};

const defined = defineCommand({
  name: "audit",
  summary: "read a peer's audit log, or verify its hash chain",
  subcommands: [list, verify],
});

/**
 * `audit --key ID` used to filter by key while --key is the client key everywhere else: it is
 * now --key-id, and the old spelling is refused with that news rather than read as a key file.
 */
export const command = {
  ...defined,
  run(argv: string[]): Promise<number> {
    const sub = argv[0] === "list" || argv[0] === "verify" ? [] : ["list"];
    if (argv.includes("--key")) {
      const json = argv.includes("--json");
      const message =
        "audit --key was the key-id filter and is renamed --key-id; give the client key file as --client-key or $LOCKBOX_KEY";
      return import("../error-report.js").then(async ({ describeError, writeErrorReport }) => {
        const report = await describeError(new UsageError(message, "--key"));
        writeErrorReport("lockbox audit", report, json);
        return report.exitCode;
      });
    }
    const first = argv[0];
    if (first === "--help" || first === "-h") return defined.run(argv);
    return defined.run([...sub, ...argv]);
  },
};

/** Every string of an event, terminal-safe (for --json too: a reader may print the values). */
function safeEvent(e: AuditEvent): AuditEvent {
  return Object.fromEntries(
    Object.entries(e).map(([k, v]) => [k, typeof v === "string" ? terminalSafe(v) : v]),
  ) as unknown as AuditEvent;
}

const AUDIT_COLUMNS: Column<AuditEvent>[] = [
  { header: "TIME", value: (e) => e.time?.toISOString() ?? "-" },
  { header: "SEQ", value: (e) => e.sequence },
  { header: "IDENTITY", value: (e) => (e.identity === "" ? "-" : e.identity) },
  { header: "OPERATION", value: (e) => e.operation },
  { header: "KEY", value: (e) => e.keyId ?? "-" },
  { header: "PROJECT", value: (e) => e.project ?? "-" },
  {
    header: "OUTCOME",
    // The status name says the same as the outcome for most events; show it only when it adds something.
    value: (e) => (e.status === e.outcome || e.status === "" ? e.outcome : `${e.outcome} (${e.status})`),
  },
  { header: "COUNT", value: (e) => e.count },
  { header: "SOURCE", value: (e) => e.source ?? "-" },
  { header: "DETAIL", value: (e) => e.detail ?? "" },
];
