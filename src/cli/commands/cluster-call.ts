/**
 * The shared frame of the CLI's control-state commands (peer, policy, identity): subcommand dispatch,
 * usage, connection flags, one admin call through the client library, text or --json output.
 */
import type { LockboxClient } from "../../client/index.js";
import type { CliCommand } from "../command.js";
import { EXIT_OK, EXIT_USAGE } from "../command.js";
import {
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  boolFlag,
  clientFrom,
  connectionSettings,
  parseCommandArgs,
  printJson,
  runGuarded,
  type OptionSpec,
  type ParsedArgs,
} from "../client-options.js";

export interface Subcommand {
  synopsis: string;
  summary: string;
  flags: string[];
  options: OptionSpec;
  positionals?: number;
  /** Does the call; returns what --json prints and the text lines otherwise. */
  run(client: LockboxClient, args: ParsedArgs): Promise<{ json: unknown; text: string[] }>;
}

export function clusterCommand(name: string, summary: string, subs: Record<string, Subcommand>): CliCommand {
  const top = [
    `usage: lockbox ${name} <${Object.keys(subs).join("|")}> [options] [connection] [--json]`,
    "",
    summary,
    "",
    ...Object.entries(subs).map(([n, s]) => `  ${n.padEnd(16)}  ${s.summary}`),
    "",
    `Run \`lockbox ${name} <subcommand> --help\` for its options.`,
  ].join("\n");
  return {
    name,
    summary,
    async run(argv) {
      const [subName, ...rest] = argv;
      if (subName === undefined || subName === "--help" || subName === "-h" || subName === "help") {
        process.stdout.write(top + "\n");
        return subName === undefined ? EXIT_USAGE : EXIT_OK;
      }
      const sub = Object.hasOwn(subs, subName) ? subs[subName] : undefined;
      if (sub === undefined) {
        process.stderr.write(`lockbox ${name}: unknown subcommand '${subName}'\n\n${top}\n`);
        return EXIT_USAGE;
      }
      const usage = [
        `usage: lockbox ${name} ${subName} ${sub.synopsis} [connection] [--json]`,
        "",
        sub.summary,
        "",
        "options:",
        ...sub.flags,
        "  --json                 print the result as one JSON line",
        "",
        CONNECTION_HELP,
      ].join("\n");
      return runGuarded(`lockbox ${name} ${subName}`, usage, async () => {
        const args = parseCommandArgs(
          rest,
          {
            ...CONNECTION_OPTIONS,
            ...sub.options,
            json: { type: "boolean" },
            help: { type: "boolean", short: "h" },
          },
          sub.positionals ?? 0,
        );
        if (boolFlag(args, "help")) {
          process.stdout.write(usage + "\n");
          return EXIT_OK;
        }
        const client = await clientFrom(connectionSettings(args));
        try {
          const out = await sub.run(client, args);
          if (boolFlag(args, "json")) printJson(out.json);
          else process.stdout.write(out.text.join("\n") + "\n");
          return EXIT_OK;
        } finally {
          client.close();
        }
      });
    },
  };
}
