/**
 * The shape of one top-level `lockbox` command. Each lives in its own module
 * under src/cli/commands/ and is loaded only when named, so a command's
 * dependencies (gRPC, LevelDB, the TPM client) cost nothing to the others.
 *
 * A module either builds its command from option definitions with
 * defineCommand() (cli-definition.ts: help and validation from one place), or
 * implements run(argv) itself (the older style, still accepted); see
 * docs/cli-commands.md.
 */
import type { CommandDefinition } from "./cli-definition.js";

export interface CliCommand {
  /** As typed: `lockbox <name> ...`. */
  readonly name: string;
  /** One line for `lockbox --help`. */
  readonly summary: string;
  /** Runs with the arguments after the command name; resolves to the exit code. */
  run(argv: string[]): Promise<number>;
  /** Present on commands built by defineCommand(): their options, for tests and docs. */
  readonly definition?: CommandDefinition;
}

/** Exit codes shared by every command; the full table by class is in exit-codes.ts. */
export { EXIT_OK, EXIT_USAGE } from "./exit-codes.js";
export { EXIT_OTHER as EXIT_FAILURE } from "./exit-codes.js";
