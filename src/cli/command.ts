/**
 * The shape of one top-level `lockbox` command. Each lives in its own module
 * under src/cli/commands/ and is loaded only when named, so a command's
 * dependencies (gRPC, LevelDB, the TPM client) cost nothing to the others.
 */
export interface CliCommand {
  /** As typed: `lockbox <name> ...`. */
  readonly name: string;
  /** One line for `lockbox --help`. */
  readonly summary: string;
  /** Runs with the arguments after the command name; resolves to the exit code. */
  run(argv: string[]): Promise<number>;
}

/** Exit codes shared by every command. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
