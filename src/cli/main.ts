#!/usr/bin/env node
/**
 * `lockbox`: the one CLI for operators and storage nodes. This file only
 * dispatches; every command is a module in ./commands/ (see command.ts).
 */
import type { CliCommand } from "./command.js";
import { EXIT_USAGE } from "./command.js";

/** Command name -> module under ./commands/ exporting `command: CliCommand`. */
const COMMANDS: Record<string, { module: string; summary: string }> = {
  init: { module: "init", summary: "create a cluster: CA, peer and admin identities, master key" },
  serve: { module: "serve", summary: "run a lockbox peer" },
  recover: {
    module: "recover",
    summary: "rebuild the master key from recovery shares and seal it to this TPM",
  },
  identity: { module: "identity", summary: "issue, list and revoke client identities (cluster-wide)" },
  peer: { module: "peer", summary: "enroll, list, remove and drain the cluster's peers" },
  policy: { module: "policy", summary: "manage the PCR policies peers are attested against" },
  key: { module: "key", summary: "create, import, get, list, clone, rekey, grant and delete keys" },
  audit: { module: "audit", summary: "read a peer's audit log" },
  status: { module: "status", summary: "show what a peer is and how it holds the master key" },
  tpm: { module: "tpm", summary: "inspect a TPM: info, EK, quote, verify" },
  join: { module: "join", summary: "join this machine to a cluster by TPM attestation" },
  "dev-cluster": { module: "dev-cluster", summary: "start or stop a local development lockbox" },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  const lines = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`);
  return [
    "usage: lockbox <command> [options]",
    "",
    "commands:",
    ...lines,
    "",
    "Run `lockbox <command> --help` for a command's options.",
  ].join("\n");
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage() + "\n");
    return name === undefined ? EXIT_USAGE : 0;
  }
  const entry = COMMANDS[name];
  if (entry === undefined) {
    process.stderr.write(`lockbox: unknown command '${name}'\n\n${usage()}\n`);
    return EXIT_USAGE;
  }
  const mod = (await import(`./commands/${entry.module}.js`)) as { command: CliCommand };
  return mod.command.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`lockbox: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
