/** One HTTP(S) request to a REST listener, with its answer read whole (bounded by the test's server). */
import * as http from "node:http";
import * as https from "node:https";

export interface RestAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
  /** The body as JSON, when it is JSON. */
  json: Record<string, unknown> | undefined;
}

export interface RestCallOptions {
  method?: string;
  headers?: Record<string, string>;
  /** Sent as application/json (unless headers say otherwise). */
  json?: unknown;
  /** Sent as is. */
  body?: Buffer | string;
  agent?: http.Agent | https.Agent;
  /** TLS client certificate (mTLS mode). */
  cert?: string;
  key?: string;
  ca?: string;
  timeoutMs?: number;
}

export function restCall(url: string, options: RestCallOptions = {}): Promise<RestAnswer> {
  const u = new URL(url);
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  let body: Buffer | undefined;
  if (options.json !== undefined) {
    body = Buffer.from(JSON.stringify(options.json));
    headers["Content-Type"] ??= "application/json";
  } else if (options.body !== undefined) {
    body = Buffer.from(options.body);
  }
  const lib = u.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(
      u,
      {
        method: options.method ?? "GET",
        headers: { ...headers, ...(body !== undefined ? { "Content-Length": String(body.length) } : {}) },
        ...(options.agent !== undefined ? { agent: options.agent } : {}),
        ...(options.cert !== undefined ? { cert: options.cert, key: options.key } : {}),
        ...(options.ca !== undefined ? { ca: options.ca } : {}),
        timeout: options.timeoutMs ?? 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const all = Buffer.concat(chunks);
          const text = all.toString("utf8");
          let json: Record<string, unknown> | undefined;
          try {
            json = JSON.parse(text) as Record<string, unknown>;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: all, text, json });
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
    req.end(body);
  });
}
