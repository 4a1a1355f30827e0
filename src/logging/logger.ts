/**
 * The peer's logs: pino, one JSON object per line on stderr, each with a level, an ISO time, the
 * peer and the component that wrote it, and a message. Parts of the peer that take a plain
 * `(line) => void` get one bound to a component and a level (`lineLog`), so they need not know
 * pino. Nothing logged here carries key bytes: the parts log ids, names and reasons only, and
 * the test of this module greps a real peer's log for the material it created.
 */
import { destination, pino, stdTimeFunctions, type DestinationStream, type Logger } from "pino";
import type { LogLevel } from "./log-level.js";

export type { Logger };

export interface LoggerOptions {
  level: LogLevel;
  /** Fields on every line (peerId). */
  base?: Record<string, unknown>;
  /** Where lines go: stderr (fd 2), written synchronously, by default. */
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: options.base ?? {},
      timestamp: stdTimeFunctions.isoTime,
      // "level":"warn" rather than pino's number: readable by people and by log shippers alike.
      formatters: { level: (label) => ({ level: label }) },
    },
    // Synchronous: a line logged just before the process exits is not lost, and lines of one
    // process never interleave mid-line.
    options.destination ?? destination({ dest: 2, sync: true }),
  );
}

/** A plain `(line) => void` writing each line as one event of `component` at `level`. */
export function lineLog(
  logger: Logger,
  component: string,
  level: Exclude<LogLevel, "silent">,
): (line: string) => void {
  const child = logger.child({ component });
  return (line) => child[level](line);
}
