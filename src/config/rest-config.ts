/**
 * The `rest` section of a peer's config.json: the Barbican v1 REST listener (src/rest). Absent,
 * the peer serves no REST API. Example:
 *
 *   "rest": {
 *     "listen": "0.0.0.0:9311",
 *     "plainHttp": false,
 *     "publicUrl": "https://kms.example.net:9311",
 *     "mtls": true,
 *     "keystone": {
 *       "url": "http://keystone.example.net:5000/v3",
 *       "serviceUser": "lockbox", "servicePasswordFile": "keystone-password",
 *       "serviceProject": "service", "serviceDomain": "Default",
 *       "serviceRoles": ["admin", "member", "creator"], "cacheSeconds": 60
 *     }
 *   }
 *
 * `plainHttp: true` serves HTTP without TLS and is accepted only on a loopback address (a proxy
 * in front terminates TLS). At least one of `mtls` and `keystone` must be set.
 */
import { LockboxError } from "../errors.js";
import { describeHostPort, isHostPort } from "../net/host-port.js";

export interface KeystoneConfig {
  url: string;
  serviceUser: string;
  /** A file holding the service user's password (relative to the config's directory or absolute). */
  servicePasswordFile: string;
  serviceProject: string;
  serviceDomain: string;
  serviceRoles: string[];
  /** Longest time a validated token is trusted without asking Keystone again (revocations take this long). */
  cacheSeconds: number;
  /** A PEM CA bundle for an https Keystone (path), if not the system's. */
  caCertificateFile?: string;
}

export interface RestConfig {
  listen: string;
  plainHttp: boolean;
  publicUrl?: string;
  mtls: boolean;
  keystone?: KeystoneConfig;
}

export function validateRestConfig(
  value: unknown,
  bad: (field: string, what: string) => LockboxError,
): RestConfig {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw bad("rest", "must be an object");
  const o = value as Record<string, unknown>;
  const known = new Set(["listen", "plainHttp", "publicUrl", "mtls", "keystone"]);
  for (const k of Object.keys(o)) if (!known.has(k)) throw bad(`rest.${k}`, "is not a known setting");
  if (typeof o.listen !== "string" || !isHostPort(o.listen, { portZero: true }))
    throw bad("rest.listen", `must be ${describeHostPort({ portZero: true })}`);
  const flag = (k: string, dflt: boolean): boolean => {
    if (o[k] === undefined) return dflt;
    if (typeof o[k] !== "boolean") throw bad(`rest.${k}`, "must be true or false");
    return o[k];
  };
  const out: RestConfig = { listen: o.listen, plainHttp: flag("plainHttp", false), mtls: flag("mtls", true) };
  if (o.publicUrl !== undefined) {
    if (typeof o.publicUrl !== "string" || !/^https?:\/\/[^/\s?#]+$/.test(o.publicUrl))
      throw bad("rest.publicUrl", "must be http(s)://HOST[:PORT] without a path");
    out.publicUrl = o.publicUrl;
  }
  if (o.keystone !== undefined) out.keystone = validateKeystone(o.keystone, bad);
  if (!out.mtls && out.keystone === undefined) throw bad("rest", "needs mtls or keystone (or both)");
  return out;
}

function validateKeystone(
  value: unknown,
  bad: (field: string, what: string) => LockboxError,
): KeystoneConfig {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw bad("rest.keystone", "must be an object");
  const o = value as Record<string, unknown>;
  const known = new Set([
    "url",
    "serviceUser",
    "servicePasswordFile",
    "serviceProject",
    "serviceDomain",
    "serviceRoles",
    "cacheSeconds",
    "caCertificateFile",
  ]);
  for (const k of Object.keys(o))
    if (!known.has(k)) throw bad(`rest.keystone.${k}`, "is not a known setting");
  const str = (k: string, dflt?: string): string => {
    const v = o[k] ?? dflt;
    if (typeof v !== "string" || v.length === 0 || v.length > 1024 || v.includes("\0"))
      throw bad(`rest.keystone.${k}`, "must be a non-empty string");
    return v;
  };
  const url = str("url");
  if (!/^https?:\/\/\S+$/.test(url))
    throw bad("rest.keystone.url", "must be an http(s) URL of Keystone's v3 API");
  const roles = o.serviceRoles ?? ["admin", "member", "creator"];
  if (
    !Array.isArray(roles) ||
    roles.length === 0 ||
    !roles.every((r) => typeof r === "string" && r.length > 0)
  )
    throw bad("rest.keystone.serviceRoles", "must be a non-empty list of role names");
  const cache = o.cacheSeconds ?? 60;
  if (typeof cache !== "number" || !Number.isInteger(cache) || cache < 1 || cache > 3600)
    throw bad("rest.keystone.cacheSeconds", "must be an integer in 1..3600");
  const out: KeystoneConfig = {
    url,
    serviceUser: str("serviceUser"),
    servicePasswordFile: str("servicePasswordFile"),
    serviceProject: str("serviceProject"),
    serviceDomain: str("serviceDomain", "Default"),
    serviceRoles: roles as string[],
    cacheSeconds: cache,
  };
  if (o.caCertificateFile !== undefined) out.caCertificateFile = str("caCertificateFile");
  return out;
}
