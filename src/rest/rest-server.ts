/**
 * The peer's REST listener for the Barbican v1 API (issue 11 item 1): node's https (TLS with the
 * peer's certificate from the cluster CA; client certificates requested, not required, for the
 * mTLS mode), or plain http only on a loopback address and only when the config asks for it.
 *
 * Each request: route (barbican-api.ts) -> the shared call pipeline (authenticate with
 * rest-auth.ts, take an in-flight slot of the identity, read the body, run, audit) -> one
 * response. Bounds (RestLimits), so no client can make the peer hold without limit: connections in
 * all and per address, header bytes, time to send headers and the whole request, idle keep-alive,
 * body bytes (read only once the caller is authenticated; a larger body is 413 and the connection
 * closed), calls in flight per identity (shared with gRPC), and an address whose calls are refused
 * for want of an identity faster than refusalsPerSourcePerSecondMax cools down (its new connections
 * closed at accept, its open ones at their next refusal). Refusals are counted into the audit log's aggregates, not written one each.
 * The bounds are tunables (src/config/rest-limits.ts, the config's `restLimits` section).
 */
import * as http from "node:http";
import * as https from "node:https";
import { isIP } from "node:net";
import type * as net from "node:net";
import type { PipelineContext } from "../edge/call-pipeline.js";
import { describe, runCall } from "../edge/call-pipeline.js";
import type { InFlightLimit } from "../edge/in-flight.js";
import { LockboxError } from "../errors.js";
import { formatHostPort, parseHostPort } from "../net/host-port.js";
import { TLS_CIPHERS, TLS_ECDH_CURVES, TLS_MIN_VERSION } from "../net/tls-policy.js";
import type { BarbicanApi, RestRequest, RestResponse, Route } from "./barbican-api.js";
import { errorDocument, httpStatusOf } from "./http-status.js";
import { authenticateRest, type RestAuthenticator } from "./rest-auth.js";
import { REST_LIMITS_DEFAULT, type RestLimits } from "../config/rest-limits.js";

export { REST_LIMITS_DEFAULT, type RestLimits } from "../config/rest-limits.js";

export interface RestServerOptions {
  /** "HOST:PORT"; port 0 picks a free one. */
  listen: string;
  /** TLS material; absent means plain HTTP, allowed only on a loopback host. */
  tls?: { caCertificatePem: string; certificatePem: string; privateKeyPem: string };
  /** Where secret_ref and order_ref point ("https://kms.example:9311"); by default this listener's address. */
  publicUrl?: string;
  api: BarbicanApi;
  auth: RestAuthenticator;
  pipeline: PipelineContext;
  inFlight: InFlightLimit;
  limits?: Partial<RestLimits>;
}

export interface RunningRestServer {
  readonly address: string;
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

export async function startRestServer(options: RestServerOptions): Promise<RunningRestServer> {
  const limits = { ...REST_LIMITS_DEFAULT, ...options.limits };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1)
      throw new RangeError(`rest limit ${name} must be a positive integer`);
  }
  // node:http refuses a headers timeout longer than the whole request's; name the tunables instead.
  if (limits.headersTimeoutMs > limits.requestTimeoutMs)
    throw new RangeError("rest limit headersTimeoutMs must not exceed requestTimeoutMs");
  const parsed = parseHostPort(options.listen, { portZero: true });
  if (parsed?.host === undefined)
    throw new RangeError(`rest listen address must be HOST:PORT, got ${options.listen}`);
  const host = parsed.host;
  if (options.tls === undefined && !isLoopback(host))
    throw new RangeError(`plain HTTP is allowed only on a loopback address, not ${host}`);

  const serverOptions: http.ServerOptions = {
    maxHeaderSize: limits.headerBytesMax,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: 1_000,
  };
  const server: http.Server =
    options.tls === undefined
      ? http.createServer(serverOptions)
      : https.createServer({
          ...serverOptions,
          ca: options.tls.caCertificatePem,
          cert: options.tls.certificatePem,
          key: options.tls.privateKeyPem,
          requestCert: options.auth.verifier !== undefined,
          rejectUnauthorized: false,
          minVersion: TLS_MIN_VERSION,
          ciphers: TLS_CIPHERS,
          ecdhCurve: TLS_ECDH_CURVES,
          honorCipherOrder: true,
          ALPNProtocols: ["http/1.1"],
          handshakeTimeout: limits.handshakeTimeoutMs,
        });
  server.maxConnections = limits.connectionsMax;
  server.maxRequestsPerSocket = limits.requestsPerConnectionMax;

  const perSource = new Map<string, number>();
  const refusals = new Map<string, { start: number; count: number }>();
  const cooldownUntil = new Map<string, number>();
  const sockets = new Set<net.Socket>();
  server.prependListener("connection", (socket: net.Socket) => {
    const source = socket.remoteAddress ?? "unknown";
    const until = cooldownUntil.get(source);
    if (until !== undefined && Date.now() < until) return void socket.destroy();
    if (until !== undefined) cooldownUntil.delete(source);
    const n = perSource.get(source) ?? 0;
    if (n >= limits.connectionsPerSourceMax) {
      options.pipeline.audit.countRefusal({
        source,
        operation: "(rest connection)",
        status: "RESOURCE_EXHAUSTED",
        reason: `more than ${limits.connectionsPerSourceMax} connections from one address`,
      });
      return void socket.destroy();
    }
    perSource.set(source, n + 1);
    sockets.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      const left = (perSource.get(source) ?? 1) - 1;
      if (left <= 0) perSource.delete(source);
      else perSource.set(source, left);
    });
  });
  server.on("clientError", (_err, socket) => socket.destroy());
  server.on("tlsClientError", (_err, socket) => socket.destroy());

  /** Notes a refusal for want of an identity; true when the source is (now) cooling down. */
  const noteRefused = (source: string): boolean => {
    const now = Date.now();
    let w = refusals.get(source);
    if (w === undefined || now - w.start >= 1_000) {
      if (refusals.size >= 4096) refusals.clear();
      w = { start: now, count: 0 };
      refusals.set(source, w);
    }
    w.count += 1;
    if (w.count > limits.refusalsPerSourcePerSecondMax) {
      if (cooldownUntil.size >= 4096) cooldownUntil.clear();
      cooldownUntil.set(source, now + limits.refusalCooldownMs);
      return true;
    }
    return (cooldownUntil.get(source) ?? 0) > now;
  };

  const scheme = options.tls === undefined ? "http" : "https";
  let ownBase = "";
  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    handle(req, res).catch((err: unknown) => {
      options.pipeline.log(`lockbox: rest: unexpected failure: ${describe(err)}`);
      if (!res.headersSent) send(res, { status: 500, json: errorDocument(500, "internal error") }, true);
      else res.destroy();
    });
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const source = req.socket.remoteAddress ?? "unknown";
    const target = req.url ?? "/";
    const q = target.indexOf("?");
    const path = q < 0 ? target : target.slice(0, q);
    const query = new URLSearchParams(q < 0 ? "" : target.slice(q + 1));
    const base = options.publicUrl ?? ownBase;
    const method = req.method ?? "GET";
    const matched = options.api.match(method, path, base);
    if ("open" in matched) return send(res, matched.open, false);
    const route: Route =
      "route" in matched
        ? matched.route
        : {
            // Unknown paths and methods still authenticate first (as Keystone's middleware does for
            // Barbican): an anonymous client learns nothing about which routes exist.
            readOnly: true,
            op: {
              name: "(rest route)",
              adminOnly: false,
              requestFacts: () => ({}),
              run: () => Promise.reject(matched.refuse),
            },
          };
    let bodyRead = false;
    const request: RestRequest = {
      method,
      path,
      query,
      headers: req.headers,
      base,
      body: () => {
        bodyRead = true;
        return readBody(req, limits.bodyBytesMax);
      },
    };
    let release: (() => void) | undefined;
    try {
      const result = await runCall(route.op, options.pipeline, {
        request,
        readOnly: route.readOnly,
        source: () => source,
        authenticate: async () => {
          const caller = await authenticateRest(req, options.auth);
          release = options.inFlight.acquire(caller.identity);
          if (release === undefined) {
            throw new LockboxError(
              "RESOURCE_EXHAUSTED",
              `identity ${caller.identity} has ${options.inFlight.perIdentityMax} calls in flight; retry later`,
            );
          }
          return caller;
        },
      });
      if ("response" in result) return send(res, result.response, !bodyRead && hasBody(req));
      let status = httpStatusOf(result.failure);
      if ("refuse" in matched && result.failure.code === matched.refuse.code) status = matched.status;
      // A cooling-down address's keep-alive connections close at their next refusal, as new ones
      // are closed at accept: a flood cannot go on over connections it opened before.
      const coolingDown = status === 401 && noteRefused(source);
      const headers: Record<string, string> = {};
      if (status === 401 && options.auth.keystone !== undefined)
        headers["WWW-Authenticate"] = `Keystone uri="${options.auth.keystone.uri}"`;
      // A body not read (refused before it) or not read to its end is not drained: the connection closes.
      send(
        res,
        { status, headers, json: errorDocument(status, result.failure.message) },
        (!bodyRead && hasBody(req)) || status === 413 || coolingDown,
      );
    } finally {
      release?.();
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) =>
      reject(
        new LockboxError(
          "UNAVAILABLE",
          `cannot listen on ${options.listen} (REST): ${err.message}`,
          undefined,
          { cause: err },
        ),
      ),
    );
    server.listen({ host, port: parsed.port }, () => resolve());
  });
  server.on("error", () => {});
  const port = (server.address() as net.AddressInfo).port;
  const address = formatHostPort({ host, port });
  ownBase = `${scheme}://${address}`;
  let closing: Promise<void> | undefined;
  return {
    address,
    port,
    url: ownBase,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, 2_000).unref();
      });
      return closing;
    },
  };
}

function send(res: http.ServerResponse, r: RestResponse, close: boolean): void {
  const headers: Record<string, string | number> = { ...(r.headers ?? {}) };
  let body: Buffer | undefined;
  if (r.bytes !== undefined) {
    headers["Content-Type"] = r.bytes.contentType;
    headers["Cache-Control"] = "no-store";
    body = r.bytes.data;
  } else if (r.json !== undefined) {
    headers["Content-Type"] = "application/json; charset=UTF-8";
    body = Buffer.from(JSON.stringify(r.json), "utf8");
  }
  headers["Content-Length"] = body?.length ?? 0;
  if (close) headers.Connection = "close";
  res.writeHead(r.status, headers);
  res.end(body, () => {
    // Key material leaves memory once written.
    if (r.bytes !== undefined) r.bytes.data.fill(0);
  });
}

const hasBody = (req: http.IncomingMessage): boolean =>
  !req.complete &&
  (req.headers["content-length"] !== undefined
    ? req.headers["content-length"] !== "0"
    : req.headers["transfer-encoding"] !== undefined);

function readBody(req: http.IncomingMessage, max: number): Promise<Buffer> {
  const tooLarge = () =>
    new LockboxError("RESOURCE_EXHAUSTED", `the request body is larger than ${max} bytes`, "body");
  const declared = Number(req.headers["content-length"] ?? "0");
  if (Number.isFinite(declared) && declared > max) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > max) {
        cleanup();
        req.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(c);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(Buffer.concat(chunks));
    };
    const onError = (e: Error): void => {
      cleanup();
      reject(new LockboxError("INVALID_ARGUMENT", `body: could not be read (${e.message})`, "body"));
    };
    const cleanup = (): void => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
  });
}

function isLoopback(host: string): boolean {
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  return host === "::1";
}
