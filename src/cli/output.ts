/**
 * How a command prints its result, chosen once per process by --json and
 * --field: one JSON line, one field's value (of each item, for a list: the
 * OpenStack CLI's `-f value -c NAME`), or text for people (aligned tables with
 * headers for lists). Also the two guards before irreversible acts: asking
 * for confirmation, and refusing to overwrite a file.
 */
import { constants, promises as fs } from "node:fs";

import { UsageError } from "./client-options.js";

export interface OutputMode {
  json: boolean;
  field?: string | undefined;
}

let mode: OutputMode = { json: false };

export function setOutputMode(m: OutputMode): void {
  mode = m;
}

export function outputMode(): OutputMode {
  return mode;
}

/** Prints one result: its field under --field, the record under --json, else `human()`. */
export function emitRecord(record: object, human: () => string): void {
  if (mode.field !== undefined) {
    process.stdout.write(fieldText(record, mode.field) + "\n");
  } else if (mode.json) {
    process.stdout.write(JSON.stringify(record) + "\n");
  } else {
    process.stdout.write(human());
  }
}

/**
 * Prints a result that may be a record or a list of records (the control-state commands' answers):
 * under --field the field of the record, or of each item; under --json the whole; else `human()`.
 */
export function emitResult(result: unknown, human: () => string): void {
  if (mode.field !== undefined && Array.isArray(result)) {
    for (const item of result as unknown[]) {
      process.stdout.write(
        fieldText(typeof item === "object" && item !== null ? item : {}, mode.field) + "\n",
      );
    }
  } else if (typeof result === "object" && result !== null) {
    emitRecord(result, human);
  } else if (mode.field !== undefined || mode.json) {
    process.stdout.write(JSON.stringify(result) + "\n");
  } else {
    process.stdout.write(human());
  }
}

/** True when the result goes out as data (--json or --field), not as text for people. */
export const structuredOutput = (): boolean => mode.json || mode.field !== undefined;

export interface Column<T> {
  header: string;
  value(item: T): string;
}

/**
 * Prints a list: under --field the field of each item, one per line; under
 * --json `document` (the items plus any paging fields); else a table.
 */
export function emitList<T>(
  items: readonly T[],
  records: readonly object[],
  document: object,
  columns: readonly Column<T>[],
  footer?: string,
): void {
  if (mode.field !== undefined) {
    for (const r of records) process.stdout.write(fieldText(r, mode.field) + "\n");
  } else if (mode.json) {
    process.stdout.write(JSON.stringify(document) + "\n");
  } else {
    process.stdout.write(
      formatTable(
        columns.map((c) => c.header),
        items.map((i) => columns.map((c) => c.value(i))),
      ),
    );
    if (footer !== undefined) process.stdout.write(footer + "\n");
  }
}

/** Columns padded to their widest cell, a header row first; the last column is not padded. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].map((l) => l + "\n").join("");
}

/** A field of a JSON record as text: strings bare, anything else as JSON. A dotted name walks in. */
export function fieldText(record: object, name: string): string {
  let v: unknown = JSON.parse(JSON.stringify(record));
  for (const part of name.split(".")) {
    if (typeof v !== "object" || v === null || !Object.hasOwn(v, part)) {
      const fields =
        typeof record === "object" ? Object.keys(JSON.parse(JSON.stringify(record)) as object) : [];
      throw new UsageError(
        `--field ${name}: the result has no such field (it has: ${fields.join(", ")})`,
        "--field",
      );
    }
    v = (v as Record<string, unknown>)[part];
  }
  return typeof v === "string" ? v : JSON.stringify(v);
}

/**
 * Asks before an irreversible act. With --yes it goes ahead; without a
 * terminal to ask on it refuses (a script must say --yes); otherwise it asks
 * on stderr and reads one line from stdin.
 */
export async function confirm(question: string, yes: boolean): Promise<boolean> {
  if (yes) return true;
  if (process.stdin.isTTY !== true) {
    throw new UsageError(
      `${question}: refusing without confirmation, and there is no terminal to ask on; pass --yes`,
      "--yes",
    );
  }
  const { createInterface } = await import("node:readline/promises");
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`${question}? [y/N] `);
    return /^(y|yes)$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

/**
 * Writes a file readable by its owner only; the mode is set before any byte
 * lands. An existing file is refused unless `force`, so a typo cannot replace
 * another key's file.
 */
export async function writePrivateFile(path: string, bytes: Uint8Array, force: boolean): Promise<void> {
  const flags = constants.O_WRONLY | constants.O_CREAT | (force ? constants.O_TRUNC : constants.O_EXCL);
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(path, flags, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") {
      throw new UsageError(`--out ${path} exists; refusing to overwrite it without --force`, "--out");
    }
    throw err;
  }
  try {
    await handle.chmod(0o600);
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
}
