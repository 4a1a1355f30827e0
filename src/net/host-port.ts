/**
 * The one reading of "HOST:PORT" in the peer: listen addresses in the config and on the command
 * line, endpoints a client calls, addresses members announce. Every caller parses with this, so an
 * address one part accepts is never refused (or split differently) by another.
 *
 * HOST is a DNS name or IPv4 address (dot-separated labels of letters, digits, '-' and '_', at most
 * 253 characters) or an IPv6 address in brackets; PORT is decimal, 1..65535, or 0 where the caller
 * allows it (a listen address: port 0 asks the OS for a free one).
 */
import { isIPv6 } from "node:net";

export interface HostPort {
  /** Without brackets for IPv6 ("::1"), as node's net and tls modules take it. */
  host: string;
  port: number;
}

export interface HostPortRule {
  /** Accept port 0 (listen addresses only). */
  portZero?: boolean;
}

/** What a valid address looks like, for error messages. */
export function describeHostPort(rule: HostPortRule = {}): string {
  return `HOST:PORT (a DNS name, IPv4 address or [IPv6] address, and a port ${rule.portZero ? 0 : 1}..65535)`;
}

/** The host and port of `text`, or undefined when it is not a valid HOST:PORT under `rule`. */
export function parseHostPort(text: string, rule: HostPortRule = {}): HostPort | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]{2,45})\]|([A-Za-z0-9._-]{1,253})):([0-9]{1,5})$/.exec(text);
  if (m === null) return undefined;
  const port = Number(m[3]);
  if (port > 65535 || (port === 0 && rule.portZero !== true)) return undefined;
  if (m[1] !== undefined) return isIPv6(m[1]) ? { host: m[1], port } : undefined;
  const host = m[2]!;
  // Labels are non-empty and do not start or end with '-' ("a..b", ".a", "-a" are not hosts).
  const labels = host.split(".");
  if (labels.some((l) => l.length === 0 || l.length > 63 || l.startsWith("-") || l.endsWith("-"))) {
    return undefined;
  }
  return { host, port };
}

export function isHostPort(text: string, rule: HostPortRule = {}): boolean {
  return parseHostPort(text, rule) !== undefined;
}

/** The inverse of parseHostPort: IPv6 hosts get their brackets back. */
export function formatHostPort(address: HostPort): string {
  return address.host.includes(":") ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
