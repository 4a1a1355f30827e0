/**
 * What every client command of the CLI shares: parsing its flags (a bad flag
 * is a usage error, exit 2, naming the flag), finding the peer and the mTLS
 * material, and turning errors into a line on stderr and an exit code.
 *
 * Where the connection comes from, first match wins per item:
 *   endpoints:   --endpoint HOST:PORT (repeatable) > $LOCKBOX_ENDPOINT (comma-separated)
 *                > DIR/dev-cluster.json's address > DIR/config.json's listen address
 *   ca/cert/key: --ca/--cert/--key > $LOCKBOX_CA/$LOCKBOX_CERT/$LOCKBOX_KEY
 *                > DIR/ca.crt, DIR/admin.crt, DIR/admin.key
 * where DIR is --dir, or $LOCKBOX_DIR; the deadline is --deadline-ms > $LOCKBOX_DEADLINE_MS.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs, type ParseArgsConfig } from "node:util";

// Types only: the client (and grpc-js under it) loads when a command really calls a peer, so
// `--help` and usage errors stay fast. See clientFrom() and runGuarded().
import type { LockboxClient } from "../client/index.js";
import { describeHostPort, isHostPort } from "../net/host-port.js";
import { isLogLevel } from "../logging/log-level.js";
import { EXIT_OK } from "./command.js";

export type OptionSpec = NonNullable<ParseArgsConfig["options"]>;

/** A mistake in how the command was called; printed with the usage, exit 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
  readonly code = "USAGE";
  constructor(
    message: string,
    /** The flag at fault, e.g. "--bits", when there is one. */
    readonly flag?: string,
  ) {
    super(message);
  }
}

export const CONNECTION_OPTIONS = {
  endpoint: { type: "string", multiple: true },
  ca: { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
  "client-key": { type: "string" },
  dir: { type: "string" },
  "deadline-ms": { type: "string" },
} as const satisfies OptionSpec;

export const CONNECTION_HELP = [
  "connection:",
  "  --endpoint HOST:PORT   a peer to call (repeatable; tried in order)   [$LOCKBOX_ENDPOINT]",
  "  --ca FILE              cluster CA certificate                        [$LOCKBOX_CA]",
  "  --cert FILE            client certificate                            [$LOCKBOX_CERT]",
  "  --key FILE             client private key (alias --client-key)       [$LOCKBOX_KEY]",
  "  --dir DIR              an `lockbox init` directory: its CA, admin identity and address [$LOCKBOX_DIR]",
  "  --deadline-ms N        deadline of each attempt (default 5000)          [$LOCKBOX_DEADLINE_MS]",
].join("\n");

export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/** node:util parseArgs with its errors turned into UsageError naming the flag. */
export function parseCommandArgs(argv: string[], options: OptionSpec, positionalsMax: number): ParsedArgs {
  let parsed: ParsedArgs;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true }) as ParsedArgs;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const flag = /'(-{1,2}[^'\s]+)/.exec(message)?.[1];
    throw new UsageError(message.replace(/\. To specify a positional argument.*$/s, ""), flag);
  }
  if (parsed.positionals.length > positionalsMax) {
    throw new UsageError(`unexpected argument '${parsed.positionals[positionalsMax]}'`);
  }
  return parsed;
}

export function stringFlag(args: ParsedArgs, name: string): string | undefined {
  const v = args.values[name];
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw new UsageError(`--${name} needs a value`, `--${name}`);
  return v;
}

export function requiredFlag(args: ParsedArgs, name: string): string {
  const v = stringFlag(args, name);
  if (v === undefined || v === "") throw new UsageError(`--${name} is required`, `--${name}`);
  return v;
}

/**
 * The init directory of a command that works on one (init, serve, identity, audit verify,
 * dev-cluster, backup, restore): --dir, else $LOCKBOX_DIR, as for the connection settings.
 */
export function dirFlag(args: ParsedArgs, env: NodeJS.ProcessEnv = process.env): string {
  const v = stringFlag(args, "dir") ?? nonEmpty(env.LOCKBOX_DIR);
  if (v === undefined || v === "") throw new UsageError("--dir is required (or set $LOCKBOX_DIR)", "--dir");
  return v;
}

export function intFlag(args: ParsedArgs, name: string, min: number, max: number): number | undefined {
  const v = stringFlag(args, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got '${v}'`, `--${name}`);
  }
  return Number(v);
}

export const boolFlag = (args: ParsedArgs, name: string): boolean => args.values[name] === true;

/** The one positional argument a subcommand needs (an id), or a usage error naming it. */
export function requiredPositional(args: ParsedArgs, what: string): string {
  const v = args.positionals[0];
  if (v === undefined || v === "") throw new UsageError(`missing ${what}`);
  return v;
}

export interface ConnectionSettings {
  endpoints: string[];
  ca: string;
  cert: string;
  key: string;
  deadlineMs?: number;
}

/** Resolves the connection from flags, environment and an init directory. */
export function connectionSettings(
  args: ParsedArgs,
  env: NodeJS.ProcessEnv = process.env,
): ConnectionSettings {
  const dir = stringFlag(args, "dir") ?? nonEmpty(env.LOCKBOX_DIR);
  const flagEndpoints = (args.values.endpoint as string[] | undefined) ?? [];
  let endpoints = flagEndpoints.length > 0 ? flagEndpoints : splitList(env.LOCKBOX_ENDPOINT);
  if (endpoints.length === 0 && dir !== undefined) endpoints = endpointsFromDir(dir);
  if (endpoints.length === 0) {
    throw new UsageError("no peer to call: give --endpoint HOST:PORT or --dir DIR", "--endpoint");
  }
  for (const e of endpoints) {
    if (!isHostPort(e))
      throw new UsageError(`--endpoint must be ${describeHostPort()}, got '${e}'`, "--endpoint");
  }
  const pick = (flag: "ca" | "cert" | "key", envName: string, file: string): string => {
    const given =
      flag === "key" ? (stringFlag(args, "client-key") ?? stringFlag(args, "key")) : stringFlag(args, flag);
    const v = given ?? nonEmpty(env[envName]) ?? (dir !== undefined ? join(dir, file) : undefined);
    if (v === undefined)
      throw new UsageError(`--${flag} is required (or --dir DIR, or $${envName})`, `--${flag}`);
    return v;
  };
  const settings: ConnectionSettings = {
    endpoints,
    ca: pick("ca", "LOCKBOX_CA", "ca.crt"),
    cert: pick("cert", "LOCKBOX_CERT", "admin.crt"),
    key: pick("key", "LOCKBOX_KEY", "admin.key"),
  };
  let deadlineMs = intFlag(args, "deadline-ms", 1, 3_600_000);
  const envDeadline = nonEmpty(env.LOCKBOX_DEADLINE_MS);
  if (deadlineMs === undefined && envDeadline !== undefined) {
    if (!/^\d+$/.test(envDeadline) || Number(envDeadline) < 1 || Number(envDeadline) > 3_600_000) {
      throw new UsageError(`$LOCKBOX_DEADLINE_MS must be an integer from 1 to 3600000, got '${envDeadline}'`);
    }
    deadlineMs = Number(envDeadline);
  }
  if (deadlineMs !== undefined) settings.deadlineMs = deadlineMs;
  return settings;
}

/** Name of the file `dev-cluster start` records the running peer's address in. */
export const DEV_CLUSTER_STATE_FILE = "dev-cluster.json";

function endpointsFromDir(dir: string): string[] {
  const state = readJson(join(dir, DEV_CLUSTER_STATE_FILE));
  if (state !== undefined && typeof state.address === "string") return [state.address];
  const configPath = join(dir, "config.json");
  const config = readJson(configPath);
  if (config === undefined)
    throw new UsageError(`--dir ${dir}: no config.json there (run lockbox init)`, "--dir");
  const listen = config.listen ?? config.listenAddress ?? config.address;
  if (typeof listen !== "string" || /:0$/.test(listen)) {
    throw new UsageError(
      `--dir ${dir}: config.json has no fixed listen address; give --endpoint`,
      "--endpoint",
    );
  }
  return [listen];
}

function readJson(path: string): Record<string, unknown> | undefined {
  if (!existsSync(path)) return undefined;
  try {
    const v: unknown = JSON.parse(readFileSync(path, "utf8"));
    return typeof v === "object" && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    throw new UsageError(`${path} is not valid JSON`);
  }
}

const nonEmpty = (s: string | undefined): string | undefined => (s === undefined || s === "" ? undefined : s);

const splitList = (s: string | undefined): string[] =>
  (s ?? "")
    .split(",")
    .map((x) => x.trim())
    .filter((x) => x !== "");

/** What this process last dialled: error reports probe it to tell a wrong CA from an outage. */
let lastConnection: ConnectionSettings | undefined;

/** A client for one CLI invocation: no key cache (the process ends right after). */
export async function clientFrom(settings: ConnectionSettings): Promise<LockboxClient> {
  lastConnection = settings;
  silenceIpServerNameWarning();
  await quietGrpcLogs();
  const { LockboxClient } = await import("../client/index.js");
  return new LockboxClient({
    endpoints: settings.endpoints,
    tls: { ca: settings.ca, cert: settings.cert, key: settings.key },
    cache: false,
    ...(settings.deadlineMs !== undefined ? { deadlineMs: settings.deadlineMs } : {}),
  });
}

/**
 * grpc-js prints its own lines ("E No address added ...") to stderr, in the middle of a command's
 * output. A command already reports what failed in its own words, so those lines are dropped,
 * unless $LOCKBOX_LOG_LEVEL asks for them: then they come as JSON log lines of component "grpc".
 */
async function quietGrpcLogs(): Promise<void> {
  const grpc = await import("@grpc/grpc-js");
  const level = process.env.LOCKBOX_LOG_LEVEL;
  if (level === undefined || level === "" || level === "silent" || !isLogLevel(level)) {
    const drop = (): void => {};
    grpc.setLogger({ error: drop, info: drop, debug: drop } as Partial<Console>);
    return;
  }
  const [{ createLogger }, { routeGrpcLogs }] = await Promise.all([
    import("../logging/logger.js"),
    import("../logging/grpc-log-route.js"),
  ]);
  routeGrpcLogs(grpc, createLogger({ level }));
}

/**
 * grpc-js sends the endpoint's host as TLS server name even when it is an IP
 * literal, and Node warns once per process (DEP0123) on stderr of every CLI
 * call. The certificate check itself is unaffected (the peer certificate
 * carries the IP as a SAN), so the CLI drops just that one warning.
 */
function silenceIpServerNameWarning(): void {
  const emit = process.emitWarning.bind(process) as (...a: unknown[]) => void;
  process.emitWarning = ((warning: unknown, ...rest: unknown[]) => {
    const options = rest[0];
    const code =
      typeof options === "object" && options !== null ? (options as { code?: string }).code : rest[1];
    if (code === "DEP0123") return;
    emit(warning, ...rest);
  }) as typeof process.emitWarning;
}

/**
 * Runs a command body and maps what it throws to output and an exit code by
 * class (exit-codes.ts): usage errors print the usage, exit 2; peer and
 * connection errors print their code, message and a hint (error-report.ts).
 * Under --json the error is one JSON line on stderr. Never prints a stack or
 * a request's contents.
 */
export async function runGuarded(
  prog: string,
  usage: string,
  body: () => Promise<number>,
  json: boolean = process.argv.includes("--json"),
): Promise<number> {
  try {
    return await body();
  } catch (err) {
    const { describeError, writeErrorReport } = await import("./error-report.js");
    const report = await describeError(err, lastConnection);
    writeErrorReport(prog, report, json);
    if (err instanceof UsageError && !json) process.stderr.write(`\n${usage}\n`);
    return report.exitCode;
  }
}

/** Writes one JSON document on a line; Dates become ISO strings. */
export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + "\n");
}

export { EXIT_OK };
