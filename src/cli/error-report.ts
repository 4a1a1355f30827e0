/**
 * Turns whatever a command threw into one report and an exit code: the class
 * comes from the error's typed code (see exit-codes.ts), a hint says what to
 * check, and under --json the report is one JSON line on stderr:
 *
 *   {"error":{"code":"NOT_FOUND","exitClass":"not-found","exitCode":3,"message":"...","field":"...","hint":"..."}}
 *
 * stdout carries only results, so `x=$(lockbox ... --json)` never captures an error.
 *
 * A connection failure (gRPC UNAVAILABLE) is looked at once more: the CLI
 * opens a TLS connection itself to the endpoint and reads the Node error code,
 * so a wrong CA or an unknown client certificate is reported as a trust
 * problem naming the file to check, not as a retryable outage.
 */
import { EXIT_CLASSES, classOfCode } from "./exit-codes.js";
import type { ConnectionSettings } from "./client-options.js";

export interface ErrorReport {
  /** The typed code the class was chosen from. */
  code: string;
  exitClass: string;
  exitCode: number;
  message: string;
  field?: string;
  hint?: string;
}

/** Node TLS error codes meaning "the peer's certificate does not chain to --ca". */
const SERVER_TRUST_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** OpenSSL alerts the peer sends when it refuses our client certificate. */
const CLIENT_TRUST_CODES = new Set([
  "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA",
  "ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE",
  "ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN",
  "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED",
  "ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED",
  "ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR",
]);

/** Builds the report for an error; `connection` is what the command dialled, if it did. */
export async function describeError(err: unknown, connection?: ConnectionSettings): Promise<ErrorReport> {
  const typed = typedCode(err);
  const message = err instanceof Error ? err.message : String(err);
  const field = fieldOf(err);
  if (typed === "UNAVAILABLE" && connection !== undefined) {
    const probed = await probeConnection(connection);
    if (probed !== undefined) return { ...probed, ...(field !== undefined ? { field } : {}) };
  }
  // A listen failure arrives wrapped (LockboxError UNAVAILABLE caused by the socket's errno error).
  const listenError = causeWithCode(err, ["EADDRINUSE", "EACCES"]);
  if (listenError !== undefined) {
    const e = listenError;
    const typed = e.code!;
    const where = e.port !== undefined ? `${e.address ?? ""}:${e.port}` : "the listen address";
    const row = classOfCode("OTHER");
    return {
      code: typed,
      exitClass: row.exitClass,
      exitCode: row.exitCode,
      message:
        typed === "EADDRINUSE" ? `port ${where} is already in use` : `not allowed to listen on ${where}`,
      hint:
        typed === "EADDRINUSE"
          ? `another process listens on ${where} (a peer already running?): stop it, or choose another port (serve --listen HOST:PORT, or "listen" in config.json; port 0 picks a free one)`
          : "ports below 1024 need privileges: choose a port above 1023",
    };
  }
  const row = classOfCode(typed ?? "OTHER");
  const report: ErrorReport = {
    code: typed ?? "ERROR",
    exitClass: row.exitClass,
    exitCode: row.exitCode,
    message,
  };
  if (field !== undefined) report.field = field;
  const hint = hintFor(typed);
  if (hint !== undefined) report.hint = hint;
  return report;
}

/** Writes the report: a JSON line on stderr under --json, else `prog: CODE: message` and the hint. */
export function writeErrorReport(prog: string, report: ErrorReport, json: boolean): void {
  if (json) {
    process.stderr.write(JSON.stringify({ error: report }) + "\n");
    return;
  }
  const field = report.field !== undefined ? ` (field ${report.field})` : "";
  const code = report.code === "ERROR" || report.code === "USAGE" ? "" : `${report.code}: `;
  process.stderr.write(`${prog}: ${code}${report.message}${field}\n`);
  if (report.hint !== undefined) process.stderr.write(`hint: ${report.hint}\n`);
}

/** The first error in err's cause chain (bounded) whose errno code is one of `codes`. */
function causeWithCode(
  err: unknown,
  codes: readonly string[],
): (NodeJS.ErrnoException & { address?: string; port?: number }) | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 5 && typeof e === "object" && e !== null; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && codes.includes(code)) return e as NodeJS.ErrnoException;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** The typed code of an error, read from its `code` property, which every error type here carries. */
function typedCode(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && code !== "") return code;
  return undefined;
}

function fieldOf(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const field = (err as { field?: unknown }).field;
  return typeof field === "string" && field !== "" ? field : undefined;
}

function hintFor(code: string | undefined): string | undefined {
  switch (code) {
    case "UNAUTHENTICATED":
      return "the peer did not accept the client certificate: check --cert/--key (or $LOCKBOX_CERT/$LOCKBOX_KEY) were issued by this cluster's CA";
    case "PERMISSION_DENIED":
      return "the identity of --cert may not make this call: use an identity with the role it needs";
    case "DEADLINE_EXCEEDED":
      return "the peer did not answer in time: retry, or raise --deadline-ms";
    case "DATA_LOSS":
      return "the stored record failed its integrity check; it is not served. Restore the peer from a backup or another replica";
    case "UNAVAILABLE":
      return "retry later; check the peer is running and reachable at --endpoint";
    default:
      return undefined;
  }
}

/**
 * Dials the first endpoint with the same TLS material and reads the Node error
 * code of what fails: refused, wrong CA, or our certificate refused. Returns
 * undefined when the handshake succeeds (the outage is elsewhere).
 */
async function probeConnection(c: ConnectionSettings): Promise<ErrorReport | undefined> {
  const endpoint = c.endpoints[0];
  if (endpoint === undefined) return undefined;
  const { connect } = await import("node:tls");
  const { readFileSync } = await import("node:fs");
  const { parseHostPort } = await import("../net/host-port.js");
  const hostPort = parseHostPort(endpoint);
  if (hostPort === undefined) return undefined;
  let material: { ca: Buffer; cert: Buffer; key: Buffer };
  try {
    material = { ca: readFileSync(c.ca), cert: readFileSync(c.cert), key: readFileSync(c.key) };
  } catch {
    return undefined;
  }
  const code = await new Promise<string | undefined>((resolve) => {
    const socket = connect({
      host: hostPort.host,
      port: hostPort.port,
      ...material,
      ALPNProtocols: ["h2"],
      // The certificate carries the IP as a SAN; checkServerIdentity below keeps that check.
      servername: /^[\d.]+$|:/.test(hostPort.host) ? "" : hostPort.host,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(undefined);
    }, 3000);
    socket.once("secureConnect", () => {
      // TLS 1.3 sends the server's verdict on our certificate after the handshake: wait for it briefly.
      setTimeout(() => {
        clearTimeout(timer);
        socket.destroy();
        resolve(undefined);
      }, 200);
    });
    socket.once("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(e.code ?? "UNKNOWN");
    });
  });
  if (code === undefined) return undefined;
  const trust = EXIT_CLASSES.find((r) => r.exitClass === "permission")!;
  const unavailable = EXIT_CLASSES.find((r) => r.exitClass === "unavailable")!;
  if (SERVER_TRUST_CODES.has(code)) {
    return {
      code: "TLS_TRUST",
      exitClass: trust.exitClass,
      exitCode: trust.exitCode,
      message: `the peer at ${endpoint} presented a certificate that ${c.ca} does not verify (${code})`,
      hint: "check --ca (or $LOCKBOX_CA, or --dir) names this cluster's CA certificate, and --endpoint names a peer of that cluster",
    };
  }
  if (CLIENT_TRUST_CODES.has(code)) {
    return {
      code: "TLS_TRUST",
      exitClass: trust.exitClass,
      exitCode: trust.exitCode,
      message: `the peer at ${endpoint} refused the client certificate ${c.cert} (${code})`,
      hint: "check --cert/--key (or $LOCKBOX_CERT/$LOCKBOX_KEY, or --dir) were issued by this cluster's CA",
    };
  }
  if (code === "ECONNREFUSED" || code === "EHOSTUNREACH" || code === "ENOTFOUND" || code === "ETIMEDOUT") {
    return {
      code: "UNAVAILABLE",
      exitClass: unavailable.exitClass,
      exitCode: unavailable.exitCode,
      message: `no peer answers at ${endpoint} (${code})`,
      hint: "check the peer is running (lockbox status, dev-cluster status) and --endpoint or $LOCKBOX_ENDPOINT names its address",
    };
  }
  return undefined;
}
