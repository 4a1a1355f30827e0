/**
 * The peer's listening socket, in front of grpc-js. grpc-js's own bindAsync
 * accepts any number of connections and lets a client without a certificate
 * open streams whose bodies it buffers; it offers no place to look at a
 * connection before that. So lockbox accepts TCP itself, within limits,
 * runs the TLS handshake itself (the policy of src/net/tls-policy.ts, in a
 * bounded time), classifies the connection by its client certificate, and
 * only then hands it to grpc-js through a connection injector.
 *
 * A connection without a valid client certificate is kept for friendly
 * answers only (UNAUTHENTICATED per call, health, reflection): few of them
 * per address and in all, each closed after a short lifetime or after a
 * number of refused calls; an address whose calls are refused faster than a
 * set rate cools down (its unauthenticated connections closed, new ones
 * refused, before the handshake when it holds no authenticated connection),
 * since a refused call costs the peer little but a TLS handshake does not.
 * A connection with a certificate counts against its identity. See
 * edge-limits.ts for every bound.
 */
import * as net from "node:net";
import * as tls from "node:tls";
import { LockboxError } from "../errors.js";
import type { Clock } from "../time/clock.js";
import type { ClientCertificateVerifier } from "../pki/client-certificate-verifier.js";
import { TLS_CIPHERS, TLS_ECDH_CURVES, TLS_MIN_VERSION } from "../net/tls-policy.js";
import type { ServerTlsMaterial } from "./client-certificate-credentials.js";
import type { EdgeLimits } from "./edge-limits.js";

export interface EdgeListenerOptions {
  host: string;
  port: number;
  tls: ServerTlsMaterial;
  limits: EdgeLimits;
  verifier: ClientCertificateVerifier;
  clock: Clock;
  /** Takes an established, classified TLS connection (grpc-js's connection injector). */
  inject(socket: tls.TLSSocket): void;
  /** A connection was closed because a limit was reached (counted into the audit log's aggregates). */
  onRefusedConnection(source: string, reason: string): void;
}

/** Counters for status and tests; never addresses or names. */
export interface EdgeListenerStats {
  open: number;
  unauthenticated: number;
  /** Connections closed at accept or after the handshake because a limit was reached. */
  refusedConnections: number;
  /** TLS handshakes that failed or timed out. */
  failedHandshakes: number;
}

export interface EdgeListener {
  readonly port: number;
  /**
   * A call on the connection from remoteAddress:remotePort was refused for want of a valid
   * certificate; the connection is closed once it has had refusalsPerConnectionMax of them.
   */
  noteRefusedCall(remoteAddress: string | undefined, remotePort: number | undefined): void;
  stats(): EdgeListenerStats;
  /** Stops accepting new connections; resolves once the listening socket is closed. */
  stopAccepting(): Promise<void>;
  /** Stops accepting and closes every connection still open. */
  close(): Promise<void>;
}

interface Tracked {
  readonly source: string;
  /** The accepted socket (under the TLS one), destroyed on close(). */
  readonly raw: net.Socket;
  tlsSocket?: tls.TLSSocket;
  unauthenticated: boolean;
  identity?: string;
  refusals: number;
}

export async function listenEdge(options: EdgeListenerOptions): Promise<EdgeListener> {
  const { limits } = options;
  /** By "address|port" of the remote end, which the TLS socket and the gRPC call see too. */
  const tracked = new Map<string, Tracked>();
  const perSource = new Map<string, number>();
  const unauthenticatedPerSource = new Map<string, number>();
  const perIdentity = new Map<string, number>();
  const authenticatedPerSource = new Map<string, number>();
  /** Refused calls per source in the current one-second window, and sources cooling down until a time. */
  const refusalWindows = new Map<string, { start: number; count: number }>();
  const cooldownUntil = new Map<string, number>();
  const coolingDown = (source: string): boolean => {
    const until = cooldownUntil.get(source);
    if (until === undefined) return false;
    if (Date.now() < until) return true;
    cooldownUntil.delete(source);
    return false;
  };
  let unauthenticated = 0;
  const stats: EdgeListenerStats = {
    open: 0,
    unauthenticated: 0,
    refusedConnections: 0,
    failedHandshakes: 0,
  };

  const server = tls.createServer({
    ca: options.tls.caCertificatePem,
    cert: options.tls.certificatePem,
    key: options.tls.privateKeyPem,
    // Request a certificate but let the connection through without one: such a client gets a
    // gRPC status it can read (UNAUTHENTICATED) instead of a failed handshake.
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: TLS_MIN_VERSION,
    ciphers: TLS_CIPHERS,
    ecdhCurve: TLS_ECDH_CURVES,
    honorCipherOrder: true,
    ALPNProtocols: ["h2"],
    handshakeTimeout: limits.handshakeTimeoutMs,
  });
  server.maxConnections = limits.connectionsMax;

  // Runs before node's TLS wrapping of the same socket: refuse over-limit connections at accept.
  server.prependListener("connection", (socket: net.Socket) => {
    const source = socket.remoteAddress ?? "unknown";
    const key = peerKey(socket.remoteAddress, socket.remotePort);
    const fromSource = perSource.get(source) ?? 0;
    // A source cooling down is refused before any TLS work, unless it also holds an authenticated
    // connection (then its new connections are sorted out after the handshake).
    if (coolingDown(source) && (authenticatedPerSource.get(source) ?? 0) === 0) {
      stats.refusedConnections += 1;
      socket.destroy();
      return;
    }
    if (fromSource >= limits.connectionsPerSourceMax || tracked.has(key)) {
      stats.refusedConnections += 1;
      options.onRefusedConnection(
        source,
        `more than ${limits.connectionsPerSourceMax} connections from one address`,
      );
      socket.destroy();
      return;
    }
    perSource.set(source, fromSource + 1);
    const t: Tracked = { source, raw: socket, unauthenticated: false, refusals: 0 };
    tracked.set(key, t);
    stats.open += 1;
    socket.once("close", () => {
      tracked.delete(key);
      stats.open -= 1;
      decrement(perSource, source);
      if (t.unauthenticated) {
        unauthenticated -= 1;
        stats.unauthenticated -= 1;
        decrement(unauthenticatedPerSource, source);
      }
      if (t.identity !== undefined) {
        decrement(perIdentity, t.identity);
        decrement(authenticatedPerSource, source);
      }
    });
  });
  server.on("tlsClientError", (_err, socket) => {
    stats.failedHandshakes += 1;
    socket.destroy();
  });
  server.on("secureConnection", (socket: tls.TLSSocket) => {
    socket.on("error", () => {});
    const t = tracked.get(peerKey(socket.remoteAddress, socket.remotePort));
    if (t === undefined) return refuse(socket, "unknown", "connection not tracked");
    t.tlsSocket = socket;
    socket.once("close", () => t.raw.destroy());
    keepPeerCertificate(socket);
    const identity = identityOf(socket, options.verifier, options.clock);
    if (identity !== undefined) {
      const n = perIdentity.get(identity) ?? 0;
      if (n >= limits.connectionsPerIdentityMax)
        return refuse(
          socket,
          identity,
          `more than ${limits.connectionsPerIdentityMax} connections of one identity`,
        );
      perIdentity.set(identity, n + 1);
      authenticatedPerSource.set(t.source, (authenticatedPerSource.get(t.source) ?? 0) + 1);
      t.identity = identity;
    } else {
      const fromSource = unauthenticatedPerSource.get(t.source) ?? 0;
      if (coolingDown(t.source))
        return refuse(
          socket,
          t.source,
          "too many calls without a valid certificate from this address; cooling down",
        );
      if (unauthenticated >= limits.unauthenticatedConnectionsMax)
        return refuse(
          socket,
          t.source,
          `more than ${limits.unauthenticatedConnectionsMax} connections without a valid certificate`,
        );
      if (fromSource >= limits.unauthenticatedConnectionsPerSourceMax)
        return refuse(
          socket,
          t.source,
          `more than ${limits.unauthenticatedConnectionsPerSourceMax} connections without a valid certificate from one address`,
        );
      unauthenticated += 1;
      stats.unauthenticated += 1;
      unauthenticatedPerSource.set(t.source, fromSource + 1);
      t.unauthenticated = true;
      const lifetime = setTimeout(() => socket.destroy(), limits.unauthenticatedConnectionLifetimeMs);
      lifetime.unref();
      socket.once("close", () => clearTimeout(lifetime));
    }
    options.inject(socket);
  });

  function refuse(socket: tls.TLSSocket, source: string, reason: string): void {
    stats.refusedConnections += 1;
    options.onRefusedConnection(source, reason);
    socket.destroy();
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) =>
      reject(
        new LockboxError(
          "UNAVAILABLE",
          `cannot listen on ${options.host}:${options.port}: ${err.message}`,
          undefined,
          {
            cause: err,
          },
        ),
      ),
    );
    server.listen({ host: options.host, port: options.port }, () => resolve());
  });
  server.on("error", () => {});
  const port = (server.address() as net.AddressInfo).port;
  let closed: Promise<void> | undefined;

  return {
    port,
    noteRefusedCall(remoteAddress, remotePort) {
      const t = tracked.get(peerKey(remoteAddress, remotePort));
      if (t === undefined || !t.unauthenticated) return;
      t.refusals += 1;
      const now = Date.now();
      let w = refusalWindows.get(t.source);
      if (w === undefined || now - w.start >= 1_000) {
        // Bounded: windows of sources that went quiet are dropped before a new one is added.
        if (refusalWindows.size >= SOURCES_TRACKED_MAX) pruneWindows(refusalWindows, cooldownUntil, now);
        w = { start: now, count: 0 };
        refusalWindows.set(t.source, w);
      }
      w.count += 1;
      if (w.count > limits.refusalsPerSourcePerSecondMax && !coolingDown(t.source)) {
        cooldownUntil.set(t.source, now + limits.refusalCooldownMs);
        options.onRefusedConnection(
          t.source,
          `more than ${limits.refusalsPerSourcePerSecondMax} calls without a valid certificate in a second; ` +
            `its connections without one are closed and refused for ${limits.refusalCooldownMs} ms`,
        );
        // Let the refusal itself go out first.
        setImmediate(() => {
          for (const other of tracked.values())
            if (other.unauthenticated && other.source === t.source) other.tlsSocket?.destroy();
        });
        return;
      }
      // Let the refusal itself go out first.
      if (t.refusals >= limits.refusalsPerConnectionMax) setImmediate(() => t.tlsSocket?.destroy());
    },
    stats: () => ({ ...stats }),
    stopAccepting() {
      closed ??= new Promise<void>((resolve) => server.close(() => resolve()));
      return closed;
    },
    close() {
      closed ??= new Promise<void>((resolve) => server.close(() => resolve()));
      const done = closed;
      for (const t of tracked.values()) {
        t.tlsSocket?.destroy();
        t.raw.destroy();
      }
      return done;
    },
  };
}

/** Sources whose refusal windows and cooldowns are remembered at once. */
const SOURCES_TRACKED_MAX = 4096;

function pruneWindows(
  windows: Map<string, { start: number; count: number }>,
  cooldowns: Map<string, number>,
  now: number,
): void {
  for (const [source, w] of windows) if (now - w.start >= 1_000) windows.delete(source);
  for (const [source, until] of cooldowns) if (until <= now) cooldowns.delete(source);
  // Still full (a flood from many addresses at once): forget the oldest half.
  if (windows.size >= SOURCES_TRACKED_MAX) {
    let drop = windows.size / 2;
    for (const source of windows.keys()) {
      if (drop-- <= 0) break;
      windows.delete(source);
    }
  }
  if (cooldowns.size >= SOURCES_TRACKED_MAX) {
    let drop = cooldowns.size / 2;
    for (const source of cooldowns.keys()) {
      if (drop-- <= 0) break;
      cooldowns.delete(source);
    }
  }
}

const peerKey = (address: string | undefined, port: number | undefined): string => `${address}|${port}`;

/**
 * What a connection counts against: the lockbox identity its certificate names, another key for
 * a certificate the TLS layer chained to our CA that is no client identity, or undefined (no
 * certificate, or one that does not chain: the connection is unauthenticated).
 */
function identityOf(
  socket: tls.TLSSocket,
  verifier: ClientCertificateVerifier,
  clock: Clock,
): string | undefined {
  if (!socket.authorized) return undefined;
  const cert = socket.getPeerCertificate();
  try {
    return verifier.verify(cert.raw, clock.now()).identity;
  } catch {
    // Chained to the cluster CA but not a lockbox client identity (a peer's certificate, say):
    // its connections count against the certificate; its calls meet their own service's checks.
    return `certificate ${cert.fingerprint256}`;
  }
}

/**
 * grpc-js asks the TLS socket for the peer certificate on every call (twice: admission and the
 * handler), and node rebuilds the whole object each time (every field, fingerprints, the DER copied),
 * a few percent of a peer's CPU under load. With renegotiation refused, a session's certificate is
 * fixed once the handshake is done (TLS 1.3 has no renegotiation), so it is built once per
 * connection, here, after the handshake.
 */
function keepPeerCertificate(socket: tls.TLSSocket): void {
  // OpenSSL 3 already refuses a client's renegotiation (a TLS 1.2 client's renegotiate() gets no
  // new handshake); this keeps it so should that default change.
  socket.disableRenegotiation();
  const build = socket.getPeerCertificate.bind(socket);
  let plain: tls.PeerCertificate | undefined;
  socket.getPeerCertificate = ((detailed?: boolean) => {
    if (detailed === true) return build(true);
    plain ??= build(false);
    return plain;
  }) as typeof socket.getPeerCertificate;
}

function decrement(map: Map<string, number>, key: string): void {
  const n = (map.get(key) ?? 1) - 1;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}
