/**
 * Log levels, as pino names them (the peer's logs are pino JSON lines). Kept apart from the
 * logger so that the config can name a level without loading pino.
 */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const isLogLevel = (value: unknown): value is LogLevel =>
  typeof value === "string" && (LOG_LEVELS as readonly string[]).includes(value);
