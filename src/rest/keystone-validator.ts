/**
 * Keystone authentication for the REST API (issue 11 item 2), as keystonemiddleware does it for
 * Barbican: a caller's `X-Auth-Token` is validated with `GET /v3/auth/tokens` (the caller's token
 * as `X-Subject-Token`, the service's own token as `X-Auth-Token`). Tokens are never compared as
 * strings: Castellan's KeystoneToken credential is exchanged for a new token on every login.
 *
 * - A validated token is cached (TokenCache: bounded, keyed by a hash of the token, never the
 *   token itself) until the earlier of its expiry and `cacheTtlMs`: a revoked token stops working
 *   within `cacheTtlMs`, like keystonemiddleware's token_cache_time.
 * - A token Keystone refused is remembered briefly too (negativeTtlMs), so a client repeating a
 *   bad token does not cost one Keystone request each.
 * - Concurrent validations of one token share one request; validations in flight are bounded
 *   (validationsInFlightMax), beyond which a call is refused UNAVAILABLE (retryable) rather than
 *   queued without bound: unauthenticated load cannot pile up in front of Keystone.
 * - The service token is fetched with the configured service user's password and renewed before
 *   it expires, or at once when Keystone refuses it.
 * - Every Keystone answer is bounded in size and time, and parsed as hostile input.
 */
import { createHash } from "node:crypto";
import * as http from "node:http";
import * as https from "node:https";
import { LockboxError } from "../errors.js";
import type { Clock } from "../time/clock.js";
import { REST_LIMITS_DEFAULT } from "../config/rest-limits.js";
import { TokenCache } from "./token-cache.js";

export interface KeystoneSettings {
  /** Keystone's v3 URL, e.g. "http://127.0.0.1:5000/v3". */
  url: string;
  /** The service user lockbox validates tokens as (needs Keystone's service or admin role). */
  serviceUser: string;
  servicePassword: string;
  serviceProject: string;
  /** Domain of the service user and its project ("Default"). */
  serviceDomain: string;
  /** Keystone roles that make a caller a lockbox service caller of the token's project. */
  serviceRoles: readonly string[];
  /** A PEM CA bundle for an https Keystone; the system's otherwise. */
  caCertificatePem?: string;
  cacheTtlMs: number;
  cacheEntriesMax: number;
  negativeTtlMs: number;
  validationsInFlightMax: number;
  requestTimeoutMs: number;
}

/** Defaults; the bounds come from the `restLimits` tunables (src/config/rest-limits.ts). */
export const KEYSTONE_DEFAULTS = {
  serviceDomain: "Default",
  serviceRoles: ["admin", "member", "creator"],
  cacheTtlMs: 60_000,
  cacheEntriesMax: REST_LIMITS_DEFAULT.keystoneCacheEntriesMax,
  negativeTtlMs: REST_LIMITS_DEFAULT.keystoneNegativeCacheMs,
  validationsInFlightMax: REST_LIMITS_DEFAULT.keystoneValidationsInFlightMax,
  requestTimeoutMs: REST_LIMITS_DEFAULT.keystoneRequestTimeoutMs,
} as const;

/** Who a validated token names. */
export interface KeystoneIdentity {
  userId: string;
  userName: string;
  projectId: string;
  roles: readonly string[];
  expiresAtMs: number;
}

/** Answers larger than this are refused (a token answer without its catalog is about 1 KB). */
const RESPONSE_BYTES_MAX = 256 * 1024;
/** Fernet tokens are about 200 characters; JWS ones under 1 KB. */
export const TOKEN_CHARS_MAX = 8192;
/** The service token is renewed this long before it expires (or at a quarter of its life left, if shorter). */
const SERVICE_TOKEN_MARGIN_MS = 60_000;

export class KeystoneValidator {
  private readonly cache: TokenCache<KeystoneIdentity | "invalid">;
  private readonly pending = new Map<string, Promise<KeystoneIdentity | "invalid">>();
  private serviceToken: { token: string; expiresAtMs: number; renewAtMs: number } | undefined;
  private serviceTokenPending: Promise<string> | undefined;
  private readonly base: URL;
  /** Keystone requests made (status and tests). */
  requests = 0;

  constructor(
    private readonly settings: KeystoneSettings,
    private readonly clock: Clock,
  ) {
    this.base = new URL(settings.url.endsWith("/") ? settings.url : settings.url + "/");
    if (this.base.protocol !== "http:" && this.base.protocol !== "https:")
      throw new RangeError("keystone url must be http or https");
    this.cache = new TokenCache(settings.cacheEntriesMax);
  }

  /** Keystone's address, for `WWW-Authenticate: Keystone uri=...`. */
  get uri(): string {
    return this.base.href.replace(/\/v3\/?$/, "");
  }

  /** The identity of a token; UNAUTHENTICATED for a bad, expired or revoked one. */
  async validate(token: string): Promise<KeystoneIdentity> {
    if (token.length === 0 || token.length > TOKEN_CHARS_MAX || !/^[\x21-\x7e]+$/.test(token))
      throw unauthenticated("X-Auth-Token is not a token");
    const key = createHash("sha256").update(token).digest("base64");
    const now = this.clock.now().getTime();
    let found = this.cache.get(key, now);
    if (found === undefined) {
      let p = this.pending.get(key);
      if (p === undefined) {
        if (this.pending.size >= this.settings.validationsInFlightMax)
          throw new LockboxError("UNAVAILABLE", "too many token validations in flight; retry");
        p = this.fetchIdentity(token).finally(() => this.pending.delete(key));
        this.pending.set(key, p);
        const settled = p;
        void settled.then(
          (v) => {
            const at = this.clock.now().getTime();
            if (v === "invalid") this.cache.set(key, v, at + this.settings.negativeTtlMs, at);
            else this.cache.set(key, v, Math.min(v.expiresAtMs, at + this.settings.cacheTtlMs), at);
          },
          () => {},
        );
      }
      found = await p;
    }
    if (found === "invalid") throw unauthenticated("the token is not valid (expired, revoked or unknown)");
    if (found.expiresAtMs <= this.clock.now().getTime()) throw unauthenticated("the token has expired");
    return found;
  }

  private async fetchIdentity(token: string): Promise<KeystoneIdentity | "invalid"> {
    for (let attempt = 0; ; attempt++) {
      const service = await this.getServiceToken();
      const res = await this.request("GET", "auth/tokens?nocatalog", {
        "X-Auth-Token": service,
        "X-Subject-Token": token,
      });
      // Our own token was refused (expired early, revoked): fetch a new one once.
      if (res.status === 401 && attempt === 0) {
        this.serviceToken = undefined;
        continue;
      }
      if (res.status === 404 || res.status === 401) return "invalid";
      if (res.status !== 200) {
        throw new LockboxError("UNAVAILABLE", `keystone answered ${res.status} to a token validation`);
      }
      return parseTokenBody(res.body, this.settings.serviceRoles);
    }
  }

  private async getServiceToken(): Promise<string> {
    const now = this.clock.now().getTime();
    if (this.serviceToken !== undefined && this.serviceToken.renewAtMs > now) return this.serviceToken.token;
    this.serviceTokenPending ??= this.login().finally(() => (this.serviceTokenPending = undefined));
    return this.serviceTokenPending;
  }

  private async login(): Promise<string> {
    const s = this.settings;
    const body = JSON.stringify({
      auth: {
        identity: {
          methods: ["password"],
          password: {
            user: { name: s.serviceUser, domain: { name: s.serviceDomain }, password: s.servicePassword },
          },
        },
        scope: { project: { name: s.serviceProject, domain: { name: s.serviceDomain } } },
      },
    });
    const res = await this.request(
      "POST",
      "auth/tokens?nocatalog",
      { "Content-Type": "application/json" },
      body,
    );
    const token = res.headers["x-subject-token"];
    if (res.status !== 201 || typeof token !== "string" || token.length === 0) {
      throw new LockboxError(
        "UNAVAILABLE",
        `keystone refused lockbox's service login (${res.status}); check the keystone settings`,
      );
    }
    const now = this.clock.now().getTime();
    const parsed = Date.parse(readExpiresAt(res.body) ?? "");
    const expiresAtMs = Number.isFinite(parsed) ? parsed : now + 300_000;
    const margin = Math.min(SERVICE_TOKEN_MARGIN_MS, Math.max(0, expiresAtMs - now) / 4);
    this.serviceToken = { token, expiresAtMs, renewAtMs: expiresAtMs - margin };
    return token;
  }

  private request(
    method: string,
    path: string,
    headers: Record<string, string>,
    body?: string,
  ): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
    this.requests += 1;
    const url = new URL(path, this.base);
    const lib = url.protocol === "https:" ? https : http;
    return new Promise((resolve, reject) => {
      const fail = (why: string): void =>
        reject(new LockboxError("UNAVAILABLE", `keystone at ${this.uri} is unreachable: ${why}`));
      const req = lib.request(
        url,
        {
          method,
          headers: { Accept: "application/json", ...headers },
          timeout: this.settings.requestTimeoutMs,
          ...(this.settings.caCertificatePem !== undefined ? { ca: this.settings.caCertificatePem } : {}),
          agent: false,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            size += c.length;
            if (size > RESPONSE_BYTES_MAX) {
              req.destroy();
              fail("answer too large");
              return;
            }
            chunks.push(c);
          });
          res.on("end", () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks).toString("utf8"),
            }),
          );
          res.on("error", (e) => fail(e.message));
        },
      );
      req.on("timeout", () => {
        req.destroy();
        fail(`no answer within ${this.settings.requestTimeoutMs} ms`);
      });
      req.on("error", (e) => fail(e.message));
      req.end(body);
    });
  }
}

const unauthenticated = (why: string): LockboxError => new LockboxError("UNAUTHENTICATED", why);

/** `token.{user, project, roles, expires_at}` of a validation answer; "invalid" when it names no project. */
function parseTokenBody(text: string, serviceRoles: readonly string[]): KeystoneIdentity | "invalid" {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new LockboxError("UNAVAILABLE", "keystone's token answer is not JSON");
  }
  const token = (v as { token?: unknown } | null)?.token as Record<string, unknown> | undefined;
  if (typeof token !== "object" || token === null)
    throw new LockboxError("UNAVAILABLE", "keystone's token answer has no token");
  const user = token.user as { id?: unknown; name?: unknown } | undefined;
  const project = token.project as { id?: unknown } | undefined;
  const expiresAtMs = Date.parse(typeof token.expires_at === "string" ? token.expires_at : "");
  // A token scoped to no project (unscoped, domain or system scope) cannot name lockbox keys.
  if (typeof project?.id !== "string" || typeof user?.id !== "string") return "invalid";
  if (!Number.isFinite(expiresAtMs))
    throw new LockboxError("UNAVAILABLE", "keystone's token answer has no expiry");
  const roles = Array.isArray(token.roles)
    ? token.roles.flatMap((r: unknown) => {
        const name = (r as { name?: unknown } | null)?.name;
        return typeof name === "string" ? [name] : [];
      })
    : [];
  return {
    userId: user.id,
    userName: typeof user.name === "string" ? user.name : "",
    projectId: project.id,
    roles: roles.filter((r) => serviceRoles.includes(r)),
    expiresAtMs,
  };
}

function readExpiresAt(text: string): string | undefined {
  try {
    const e = (JSON.parse(text) as { token?: { expires_at?: unknown } }).token?.expires_at;
    return typeof e === "string" ? e : undefined;
  } catch {
    return undefined;
  }
}
