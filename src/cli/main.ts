#!/usr/bin/env node
/**
 * `lockbox`: the one CLI for operators and storage nodes. This file only
 * dispatches; every command is a module in ./commands/ listed in
 * command-table.ts (see command.ts and docs/cli-commands.md).
 */
import { COMMANDS } from "./command-table.js";
import type { CliCommand } from "./command.js";
import { EXIT_OK, EXIT_USAGE, exitCodeHelp } from "./exit-codes.js";
import { LOCKBOX_VERSION } from "../peer/version.js";

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  const lines = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`);
  return [
    "usage: lockbox <command> [options]",
    "       lockbox --version",
    "",
    "commands:",
    ...lines,
    "",
    "Run `lockbox <command> --help` for a command's options.",
    "Under --json, results are one JSON line on stdout and errors one JSON line on stderr:",
    '  {"error":{"code":"NOT_FOUND","exitClass":"not-found","exitCode":3,"message":"...","hint":"..."}}',
    "",
    exitCodeHelp(),
  ].join("\n");
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    (name === undefined ? process.stderr : process.stdout).write(usage() + "\n");
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (name === "--version" || name === "-V" || name === "version") {
    process.stdout.write(`lockbox ${LOCKBOX_VERSION}\n`);
    return EXIT_OK;
  }
  const entry = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (entry === undefined) {
    process.stderr.write(`lockbox: unknown command '${name}'\n\n${usage()}\n`);
    return EXIT_USAGE;
  }
  const mod = (await import(`./commands/${entry.module}.js`)) as { command: CliCommand };
  return mod.command.run(rest);
}

// `lockbox key list | head -1`: a reader that stops early is not an error of the command.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`lockbox: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
