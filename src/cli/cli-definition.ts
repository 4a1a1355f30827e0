/**
 * One definition per command: its arguments and options, each with its
 * description, whether it is required and which values it takes. Parsing,
 * validation (a missing required option, an unknown flag, a value outside its
 * choices: all usage errors, exit 2) and `--help` are generated from it by
 * commander, so help cannot drift from what the command accepts.
 *
 * A command's body receives the same ParsedArgs the older parseCommandArgs()
 * gives (values by long flag name, positionals in order), so the helpers of
 * client-options.ts (stringFlag, intFlag, connectionSettings...) work on both.
 */
import { Command, CommanderError, Option } from "commander";

import type { CliCommand } from "./command.js";
import { EXIT_OK, EXIT_USAGE } from "./exit-codes.js";
import { runGuarded, type ParsedArgs } from "./client-options.js";
import { setOutputMode } from "./output.js";

export interface OptionDefinition {
  /** commander syntax: "--project <P>" takes a value, "--all" is a switch, "-y, --yes" has a short form. */
  readonly flags: string;
  readonly description: string;
  /** Missing: a usage error naming it, before anything runs. */
  readonly required?: boolean;
  /** Any other value is a usage error; the choices are listed in the help. */
  readonly choices?: readonly string[];
  /** Shown in the help; the body sees it when the option is not given. */
  readonly default?: string;
  /** May be given more than once; the body sees a string[]. */
  readonly repeatable?: boolean;
  /** Accepted but not listed (a deprecated name that only explains its replacement). */
  readonly hidden?: boolean;
  /** An environment variable that gives the value when the flag is not (it satisfies `required`). */
  readonly env?: string;
}

export interface ArgumentDefinition {
  /** "<id>": required; "[file...]": any number, the body sees each as a positional. */
  readonly name: string;
  readonly description: string;
}

export interface LeafDefinition {
  readonly name: string;
  readonly summary: string;
  /** More text after the summary in its --help. */
  readonly description?: string;
  readonly arguments?: readonly ArgumentDefinition[];
  readonly options: readonly OptionDefinition[];
  /** Adds the connection options (--endpoint, --ca, --cert, --key, --dir, --deadline-ms). */
  readonly connection?: boolean;
  /** Adds --json and --field NAME. */
  readonly output?: boolean;
  run(args: ParsedArgs): Promise<number>;
}

export interface GroupDefinition {
  readonly name: string;
  readonly summary: string;
  readonly description?: string;
  readonly subcommands: readonly LeafDefinition[];
}

export type CommandDefinition = LeafDefinition | GroupDefinition;

export const isGroup = (d: CommandDefinition): d is GroupDefinition => "subcommands" in d;

export const CONNECTION_OPTION_DEFINITIONS: readonly OptionDefinition[] = [
  {
    flags: "--endpoint <HOST:PORT>",
    description: "a peer to call (repeatable; tried in order) [$LOCKBOX_ENDPOINT, comma-separated]",
    repeatable: true,
  },
  { flags: "--ca <FILE>", description: "cluster CA certificate [$LOCKBOX_CA]" },
  { flags: "--cert <FILE>", description: "client certificate [$LOCKBOX_CERT]" },
  { flags: "--key <FILE>", description: "client private key [$LOCKBOX_KEY]" },
  { flags: "--client-key <FILE>", description: "same as --key" },
  {
    flags: "--dir <DIR>",
    description: "an `lockbox init` directory: its CA, admin identity and address [$LOCKBOX_DIR]",
  },
  // No commander default: an unset flag must leave room for $LOCKBOX_DEADLINE_MS (the client defaults to 5000).
  {
    flags: "--deadline-ms <N>",
    description: "deadline of each attempt (default 5000) [$LOCKBOX_DEADLINE_MS]",
  },
];

export const OUTPUT_OPTION_DEFINITIONS: readonly OptionDefinition[] = [
  {
    flags: "--json",
    description:
      "print the result as one JSON line, enums and numbers as the API's JSON mapping writes them; errors as JSON on stderr",
  },
  {
    flags: "-f, --field <NAME>",
    description: "print only this field of the result (of each item, for a list), e.g. --field id",
  },
];

/**
 * The init directory option of a command that works on one offline (init, serve, backup...):
 * required, and $LOCKBOX_DIR gives it when the flag is absent.
 */
export function dirOption(description: string): OptionDefinition {
  return { flags: "--dir <DIR>", description, required: true, env: "LOCKBOX_DIR" };
}

/** Every option a leaf accepts, its own first: what --help lists and the tests check. */
export function allOptions(leaf: LeafDefinition): OptionDefinition[] {
  return [
    ...leaf.options,
    ...(leaf.output === true ? OUTPUT_OPTION_DEFINITIONS : []),
    ...(leaf.connection === true ? CONNECTION_OPTION_DEFINITIONS : []),
  ];
}

/** The leaves of a definition with the words that name them after `lockbox`. */
export function leavesOf(def: CommandDefinition): { path: string[]; leaf: LeafDefinition }[] {
  if (!isGroup(def)) return [{ path: [def.name], leaf: def }];
  return def.subcommands.map((leaf) => ({ path: [def.name, leaf.name], leaf }));
}

const EXIT_HELP =
  "Exit codes by class (usage 2, not found 3, permission 4, unavailable 5, data loss 6, other 1): see `lockbox --help`.";

/** The CliCommand main.ts runs, built from a definition. */
export function defineCommand(def: CommandDefinition): CliCommand {
  return {
    name: def.name,
    summary: def.summary,
    definition: def,
    run: (argv) => runDefinition(def, argv),
  };
}

/** Commander's help width when stdout is not a terminal; descriptions are wrapped to it. */
const HELP_WIDTH = 80;

async function runDefinition(def: CommandDefinition, argv: string[]): Promise<number> {
  let result = EXIT_OK;
  const json = argv.includes("--json");
  const program = new Command(`lockbox ${def.name}`);
  program.description(
    def.description !== undefined ? `${def.summary}\n\n${prose(def.description)}` : def.summary,
  );
  let prog = `lockbox ${def.name}`;
  const bind = (cmd: Command, leaf: LeafDefinition, name: string): void => {
    for (const a of leaf.arguments ?? []) cmd.argument(a.name, a.description);
    for (const o of allOptions(leaf)) cmd.addOption(toOption(o));
    cmd.addHelpText("after", `\n${EXIT_HELP}`);
    cmd.action(async (...params: unknown[]) => {
      const self = params[params.length - 1] as Command;
      const positionals = params
        .slice(0, (leaf.arguments ?? []).length)
        .flat()
        .filter((p): p is string => typeof p === "string");
      const args: ParsedArgs = { values: valuesOf(self), positionals };
      const field = args.values.field;
      setOutputMode({
        json: args.values.json === true,
        field: typeof field === "string" ? field : undefined,
      });
      result = await runGuarded(name, "", () => leaf.run(args), json);
    });
  };
  const configure = (cmd: Command): Command =>
    cmd
      .exitOverride()
      .helpOption("-h, --help", "show this help")
      .configureOutput({
        writeOut: (s) => process.stdout.write(s),
        writeErr: (s) => process.stderr.write(s),
        // Usage errors are reported below, once, in the same shape as every other error.
        outputError: () => {},
      });
  configure(program);
  if (isGroup(def)) {
    program.helpCommand(false);
    for (const leaf of def.subcommands) {
      const sub = program.command(leaf.name).summary(leaf.summary);
      sub.description(
        leaf.description !== undefined ? `${leaf.summary}\n\n${prose(leaf.description)}` : leaf.summary,
      );
      configure(sub);
      bind(sub, leaf, `lockbox ${def.name} ${leaf.name}`);
    }
    program.addHelpText("after", `\n${EXIT_HELP}`);
    const first = argv[0];
    if (first !== undefined && def.subcommands.some((l) => l.name === first)) prog += ` ${first}`;
  } else {
    bind(program, def, prog);
  }
  try {
    await program.parseAsync(argv, { from: "user" });
    return result;
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    if (err.code === "commander.helpDisplayed" || err.code === "commander.version") return EXIT_OK;
    // `lockbox key` alone: commander printed the help on stderr; that is a usage error.
    if (err.code === "commander.help") return EXIT_USAGE;
    const { writeErrorReport } = await import("./error-report.js");
    writeErrorReport(
      prog,
      {
        code: "USAGE",
        exitClass: "usage",
        exitCode: EXIT_USAGE,
        message: err.message.replace(/^error: /, ""),
        hint: `run \`${prog} --help\` for its options`,
      },
      json,
    );
    return EXIT_USAGE;
  }
}

function toOption(o: OptionDefinition): Option {
  const option = new Option(o.flags, o.required === true ? `${o.description} (required)` : o.description);
  if (o.required === true) option.makeOptionMandatory();
  if (o.choices !== undefined) option.choices(o.choices);
  if (o.default !== undefined) option.default(o.default);
  if (o.repeatable === true) {
    option.argParser((value: string, previous: unknown) => [
      ...(Array.isArray(previous) ? (previous as string[]) : []),
      value,
    ]);
  }
  if (o.hidden === true) option.hideHelp();
  if (o.env !== undefined) option.env(o.env);
  return option;
}

/** Option values by long flag name ("page-size"), as parseCommandArgs gives them. */
function valuesOf(cmd: Command): ParsedArgs["values"] {
  const values: ParsedArgs["values"] = {};
  for (const option of cmd.options) {
    if (option.long === undefined) continue;
    const v: unknown = cmd.getOptionValue(option.attributeName());
    if (v !== undefined) values[option.long.slice(2)] = v as string | boolean | string[];
  }
  return values;
}

/**
 * A description wrapped for the terminal, by paragraph: the source breaks its lines at about 100
 * columns, and commander wraps each line on its own, which left a short line after every source
 * line end and lost the indentation of a table row's continuation. Lines of one paragraph are
 * joined and wrapped at `width`; a list item ("- ") continues under its text; an indented line (a
 * table row: a term, two spaces, its text) continues under its text. Commander leaves lines that
 * fit alone.
 */
export function prose(text: string, width = HELP_WIDTH): string {
  const blocks: { first: string; hang: number; words: string[] }[] = [];
  for (const line of text.split("\n")) {
    const last = blocks.at(-1);
    const indented = /^\s/.test(line);
    if (
      line !== "" &&
      !indented &&
      !line.startsWith("- ") &&
      last !== undefined &&
      last.words.length > 0 &&
      last.hang === 0
    ) {
      last.words.push(...line.split(/\s+/));
      continue;
    }
    if (line === "") {
      blocks.push({ first: "", hang: 0, words: [] });
      continue;
    }
    // The text of a table row starts after its term and two or more spaces; of a list item, after "- ".
    const head = indented
      ? (/^\s+\S+(?: \S+)*\s{2,}/.exec(line)?.[0] ?? /^\s+/.exec(line)![0])
      : line.startsWith("- ")
        ? "- "
        : "";
    blocks.push({ first: head, hang: head.length, words: line.slice(head.length).trim().split(/\s+/) });
  }
  const out: string[] = [];
  for (const b of blocks) {
    if (b.words.length === 0) {
      out.push(b.first);
      continue;
    }
    let current = b.first;
    let empty = true;
    for (const word of b.words) {
      if (!empty && current.length + 1 + word.length > width) {
        out.push(current);
        current = " ".repeat(b.hang) + word;
      } else {
        current = empty ? current + word : `${current} ${word}`;
      }
      empty = false;
    }
    out.push(current);
  }
  return out.join("\n");
}
