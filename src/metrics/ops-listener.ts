/**
 * The peer's operations listener: plain HTTP, apart from the gRPC port, for what a Prometheus
 * server, a load balancer or an orchestrator polls. Off unless the config names an address
 * (metrics.listen); meant for loopback or a management network, since it has no TLS and no
 * authentication, and serves nothing secret:
 *   GET /metrics  Prometheus exposition text (absent when metrics are off)
 *   GET /healthz  200 while the process runs and its event loop turns (liveness)
 *   GET /readyz   200 when the peer can serve keys, else 503 with the reason (readiness: sealed)
 * Requests are never read beyond their headers, and the server keeps few, short connections.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { formatHostPort, parseHostPort } from "../net/host-port.js";

export interface Readiness {
  ready: boolean;
  /** Why not, in a few words ("sealed"); "" when ready. */
  reason: string;
}

export interface OpsListenerOptions {
  /** HOST:PORT; port 0 picks a free one. */
  listen: string;
  /** Absent: /metrics answers 404. */
  scrape?: () => Promise<{ contentType: string; body: string }>;
  readiness(): Readiness;
}

export interface OpsListener {
  /** "HOST:PORT" as bound. */
  readonly address: string;
  close(): Promise<void>;
}

const CONNECTIONS_MAX = 32;
const REQUEST_TIMEOUT_MS = 10_000;

export async function startOpsListener(options: OpsListenerOptions): Promise<OpsListener> {
  const parsed = parseHostPort(options.listen, { portZero: true });
  if (parsed?.host === undefined)
    throw new RangeError(`metrics listen address must be HOST:PORT, got ${options.listen}`);
  const server = createServer(
    { requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: REQUEST_TIMEOUT_MS },
    (req, res) => {
      void answer(options, req, res).catch(() => {
        if (!res.headersSent) reply(res, 500, "text/plain", "internal error\n");
        else res.destroy();
      });
    },
  );
  server.maxConnections = CONNECTIONS_MAX;
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(parsed.port, parsed.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    address: formatHostPort({ host: parsed.host!, port }),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function answer(options: OpsListenerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  // The body of a request, if any, is never read.
  req.resume();
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader("allow", "GET, HEAD");
    return reply(res, 405, "text/plain", "method not allowed\n");
  }
  const path = (req.url ?? "/").split("?")[0];
  switch (path) {
    case "/healthz":
      return reply(res, 200, "text/plain", "ok\n");
    case "/readyz": {
      const r = options.readiness();
      return reply(res, r.ready ? 200 : 503, "application/json", JSON.stringify(r) + "\n");
    }
    case "/metrics": {
      if (options.scrape === undefined) return reply(res, 404, "text/plain", "metrics are off\n");
      const { contentType, body } = await options.scrape();
      return reply(res, 200, contentType, body);
    }
    default:
      return reply(res, 404, "text/plain", "not found (try /metrics, /healthz, /readyz)\n");
  }
}

function reply(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { "content-type": contentType, "cache-control": "no-store" });
  res.end(res.req.method === "HEAD" ? undefined : body);
}
