/**
 * The CLI's exit codes: one table, by class, so a script can tell "retry
 * later" from "fix the call" from "the data is damaged" without reading the
 * message. A class is chosen from an error's typed code (LockboxError's code,
 * the gRPC status name of a LockboxClientError, a Node errno code), never from
 * its message text. `lockbox --help` and the README print this same table.
 */

export type ExitClass = "ok" | "other" | "usage" | "not-found" | "permission" | "unavailable" | "data-loss";

export interface ExitClassRow {
  readonly exitClass: ExitClass;
  readonly exitCode: number;
  /** What it means to the caller, for --help and the README. */
  readonly meaning: string;
  /** Status and error codes that land in this class. */
  readonly codes: readonly string[];
}

/** The one table. Codes not listed anywhere are "other". */
export const EXIT_CLASSES: readonly ExitClassRow[] = [
  { exitClass: "ok", exitCode: 0, meaning: "success", codes: [] },
  {
    exitClass: "other",
    exitCode: 1,
    meaning: "any other failure (state conflicts, internal errors, a declined confirmation)",
    codes: ["ALREADY_EXISTS", "FAILED_PRECONDITION", "INTERNAL", "UNKNOWN", "UNIMPLEMENTED", "CANCELLED"],
  },
  {
    exitClass: "usage",
    exitCode: 2,
    meaning:
      "the call is wrong: unknown or missing option, bad value, unreadable TLS file; the peer's INVALID_ARGUMENT",
    codes: ["USAGE", "INVALID_ARGUMENT", "OUT_OF_RANGE", "INVALID_TLS_MATERIAL"],
  },
  { exitClass: "not-found", exitCode: 3, meaning: "no such key, grant or record", codes: ["NOT_FOUND"] },
  {
    exitClass: "permission",
    exitCode: 4,
    meaning:
      "refused: not authenticated, role not allowed, or TLS trust failed (wrong CA, unknown client certificate)",
    codes: ["PERMISSION_DENIED", "UNAUTHENTICATED", "TLS_TRUST"],
  },
  {
    exitClass: "unavailable",
    exitCode: 5,
    meaning: "retryable: no peer answered, no quorum, deadline passed, or overloaded",
    codes: ["UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"],
  },
  {
    exitClass: "data-loss",
    exitCode: 6,
    meaning: "stored data failed its integrity check: do not retry, restore or investigate",
    codes: ["DATA_LOSS"],
  },
];

export const EXIT_OK = 0;
export const EXIT_OTHER = 1;
export const EXIT_USAGE = 2;
export const EXIT_NOT_FOUND = 3;
export const EXIT_PERMISSION = 4;
export const EXIT_UNAVAILABLE = 5;
export const EXIT_DATA_LOSS = 6;

/** The class row of a typed error code (a gRPC status name, "USAGE", "TLS_TRUST"...). */
export function classOfCode(code: string): ExitClassRow {
  return EXIT_CLASSES.find((row) => row.codes.includes(code)) ?? EXIT_CLASSES[1]!;
}

/** The table as text, for `lockbox --help`. */
export function exitCodeHelp(): string {
  const width = Math.max(...EXIT_CLASSES.map((r) => r.exitClass.length));
  return [
    "exit codes:",
    ...EXIT_CLASSES.map((r) => `  ${r.exitCode}  ${r.exitClass.padEnd(width)}  ${r.meaning}`),
  ].join("\n");
}
