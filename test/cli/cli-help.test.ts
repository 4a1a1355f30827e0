/**
 * Every command in the table main.ts dispatches from answers --help with exit 0,
 * and a command built from option definitions lists every option it accepts and
 * refuses a call missing a required option or argument with the usage exit code
 * (2). Commands still in the older run(argv) style are held to --help only.
 * Real CLI processes; no peer is needed, because validation runs before dialling.
 */
import test from "ava";

import { allOptions, leavesOf } from "../../src/cli/cli-definition.js";
import { COMMANDS } from "../../src/cli/command-table.js";
import type { CliCommand } from "../../src/cli/command.js";
import { EXIT_USAGE } from "../../src/cli/exit-codes.js";
import { runCli } from "../helpers/cli-process.js";

async function load(module: string): Promise<CliCommand> {
  return ((await import(`../../src/cli/commands/${module}.js`)) as { command: CliCommand }).command;
}

test("lockbox --help lists every command of the table and the exit-code classes", async (t) => {
  const r = await runCli(["--help"]);
  t.is(r.code, 0);
  for (const name of Object.keys(COMMANDS)) t.regex(r.text, new RegExp(`^  ${name} `, "m"), name);
  for (const cls of ["usage", "not-found", "permission", "unavailable", "data-loss", "other"])
    t.true(r.text.includes(cls), cls);
});

test("lockbox --version prints the package version; no command is a usage error", async (t) => {
  const v = await runCli(["--version"]);
  t.is(v.code, 0);
  t.regex(v.text, /^lockbox \d+\.\d+\.\d+/);
  const none = await runCli([]);
  t.is(none.code, EXIT_USAGE);
  const unknown = await runCli(["no-such-command"]);
  t.is(unknown.code, EXIT_USAGE);
});

test("every command answers --help with exit 0; defined ones list every option and refuse a missing required one with exit 2", async (t) => {
  let defined = 0;
  for (const [name, entry] of Object.entries(COMMANDS)) {
    const command = await load(entry.module);
    const top = await runCli([name, "--help"]);
    t.is(top.code, 0, `${name} --help: ${top.stderr}`);
    t.true(top.text.length > 0, `${name} --help printed nothing`);
    if (command.definition === undefined) continue;
    defined++;
    for (const { path, leaf } of leavesOf(command.definition)) {
      const label = `lockbox ${path.join(" ")}`;
      const help = await runCli([...path, "--help"]);
      t.is(help.code, 0, `${label} --help: ${help.stderr}`);
      for (const option of allOptions(leaf)) {
        if (option.hidden === true) continue;
        const long = /--[a-z0-9-]+/.exec(option.flags)![0];
        t.true(help.text.includes(long), `${label} --help does not mention ${long}`);
        if (option.required === true)
          t.true(help.text.includes(`${option.description} (required)`) || help.text.includes("(required)"));
      }
      // Only the required arguments, none of the required options. A leaf that needs nothing
      // (tpm info) would run, so it is held to --help only.
      const needs =
        leaf.connection === true ||
        (leaf.arguments ?? []).length > 0 ||
        leaf.options.some((o) => o.required === true);
      if (!needs) continue;
      const positionals = (leaf.arguments ?? []).map(() => "00000000-0000-8000-8000-000000000000");
      const missing = await runCli([...path, ...positionals], { env: { HOME: "/nonexistent" } });
      t.is(missing.code, EXIT_USAGE, `${label} with nothing required given: ${missing.stderr}`);
      const firstRequired = leaf.options.find((o) => o.required === true);
      if (firstRequired !== undefined) {
        const long = /--[a-z0-9-]+/.exec(firstRequired.flags)![0];
        t.true(missing.stderr.includes(long), `${label}: the error names ${long}: ${missing.stderr}`);
      }
      if ((leaf.arguments ?? []).length > 0) {
        const noArg = await runCli(path);
        t.is(noArg.code, EXIT_USAGE, `${label} without its argument`);
      }
    }
  }
  t.true(defined >= 3, "key, status and audit are built from definitions");
});

test("a usage error under --json is one JSON line on stderr with its class and exit code", async (t) => {
  const r = await runCli(["key", "create", "--project", "p", "--json"]);
  t.is(r.code, EXIT_USAGE);
  t.is(r.text, "");
  const report = JSON.parse(r.stderr) as { error: { code: string; exitClass: string; exitCode: number } };
  t.like(report.error, { code: "USAGE", exitClass: "usage", exitCode: EXIT_USAGE });
});

test("audit --key (the old key-id filter) is refused with a message naming --key-id", async (t) => {
  const r = await runCli(["audit", "--key", "some-id", "--endpoint", "127.0.0.1:1"]);
  t.is(r.code, EXIT_USAGE);
  t.true(r.stderr.includes("--key-id"));
});

test("a value outside an option's choices is a usage error naming the choices", async (t) => {
  const r = await runCli(["key", "create", "--project", "p", "--scope", "s", "--name", "n", "--bits", "100"]);
  t.is(r.code, EXIT_USAGE);
  t.true(r.stderr.includes("--bits"));
  t.true(r.stderr.includes("256"));
});
