/**
 * A TCP proxy on 127.0.0.1 in front of one peer, for fault tests: the other peers dial the proxy (the
 * peer advertises its address), and the test cuts and heals the link on command.
 *
 * - `cut("reset")`: every connection through the proxy is reset (RST, as when a peer's host drops off
 *   the network and comes back with no socket state) and new ones are reset as they arrive.
 * - `cut("blackhole")`: nothing is delivered either way and nothing is dropped: the proxy stops reading,
 *   so bytes wait in kernel socket buffers and the senders' TCP stalls, as in a partition that heals
 *   before TCP gives up. New connections are accepted and held, not dialled upstream. Only deadlines
 *   and keepalives notice.
 * - `heal()`: held connections go on (with the bytes they had sent, in order) and new ones are proxied.
 *
 * Bounded: at most `connectionsMax` connections (more are reset at once); each direction is a pipe,
 * which stops reading from one side while the other side's write buffer is above its high-water mark
 * (the stream default, 16 KiB on Node 20),
 * so a peer that stops reading cannot make the proxy buffer without limit (`bufferedBytesMax()` shows it).
 */
import { createServer, connect, type Server, type Socket } from "node:net";

export type CutMode = "reset" | "blackhole";

export interface TcpFaultProxyOptions {
  /** "127.0.0.1:PORT" of the peer behind the proxy; setUpstream() changes it (a restarted peer). */
  upstream: string;
  connectionsMax?: number;
}

export interface TcpFaultProxyStats {
  accepted: number;
  /** Connections reset by a cut, or refused (cut, or over connectionsMax). */
  reset: number;
  /** Connections open now. */
  open: number;
}

interface Pair {
  client: Socket;
  /** Undefined while held by a blackhole before it was dialled upstream. */
  upstream: Socket | undefined;
  /** Piped both ways now (false while held). */
  flowing: boolean;
}

const CONNECTIONS_MAX_DEFAULT = 256;

export class TcpFaultProxy {
  readonly #server: Server;
  readonly #pairs = new Set<Pair>();
  readonly #connectionsMax: number;
  #upstream: { host: string; port: number };
  #cut: CutMode | undefined;
  readonly stats: Omit<TcpFaultProxyStats, "open"> = { accepted: 0, reset: 0 };
  /** "127.0.0.1:PORT" the proxy listens on; stays the same for the proxy's life. */
  address = "";

  private constructor(options: TcpFaultProxyOptions) {
    this.#upstream = parseAddress(options.upstream);
    this.#connectionsMax = options.connectionsMax ?? CONNECTIONS_MAX_DEFAULT;
    this.#server = createServer({ pauseOnConnect: true }, (socket) => this.#accept(socket));
  }

  static async start(options: TcpFaultProxyOptions): Promise<TcpFaultProxy> {
    const proxy = new TcpFaultProxy(options);
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once("error", reject);
      proxy.#server.listen(0, "127.0.0.1", () => resolve());
    });
    const { port } = proxy.#server.address() as { port: number };
    proxy.address = `127.0.0.1:${port}`;
    return proxy;
  }

  get cutMode(): CutMode | undefined {
    return this.#cut;
  }

  /** New connections go to `address`; open ones stay where they are (to a peer that died, usually). */
  setUpstream(address: string): void {
    this.#upstream = parseAddress(address);
  }

  cut(mode: CutMode): void {
    this.#cut = mode;
    for (const pair of this.#pairs) {
      if (mode === "reset") this.#reset(pair);
      else this.#hold(pair);
    }
  }

  heal(): void {
    this.#cut = undefined;
    for (const pair of this.#pairs) this.#forward(pair);
  }

  /** The most bytes any one proxied socket holds in its buffers now (read and not yet written). */
  bufferedBytesMax(): number {
    let max = 0;
    for (const { client, upstream } of this.#pairs) {
      const held =
        client.readableLength +
        client.writableLength +
        (upstream === undefined ? 0 : upstream.readableLength + upstream.writableLength);
      max = Math.max(max, held);
    }
    return max;
  }

  currentStats(): TcpFaultProxyStats {
    return { ...this.stats, open: this.#pairs.size };
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const pair of this.#pairs) this.#reset(pair);
    await closed;
  }

  #accept(client: Socket): void {
    this.stats.accepted++;
    client.on("error", () => {});
    if (this.#cut === "reset" || this.#pairs.size >= this.#connectionsMax) {
      this.stats.reset++;
      client.resetAndDestroy();
      return;
    }
    const pair: Pair = { client, upstream: undefined, flowing: false };
    this.#pairs.add(pair);
    client.once("close", () => this.#drop(pair));
    if (this.#cut === undefined) this.#forward(pair);
  }

  /** Dials upstream if not yet done, and pipes both ways (once: a second pipe would send bytes twice). */
  #forward(pair: Pair): void {
    if (pair.flowing) return;
    pair.flowing = true;
    if (pair.upstream === undefined) {
      const upstream = connect(this.#upstream);
      pair.upstream = upstream;
      upstream.on("error", () => {});
      // The peer behind refused or died: the client sees a reset, as it would dialling the peer. A
      // clean close was already passed on by the pipe (end), and the client closes in its turn.
      upstream.once("close", (hadError) => {
        if (hadError) this.#reset(pair);
      });
    }
    pair.client.pipe(pair.upstream);
    pair.upstream.pipe(pair.client);
    pair.client.resume();
    pair.upstream.resume();
  }

  /** Stops reading both ways; what was read stays in the readable buffers for heal(). */
  #hold(pair: Pair): void {
    pair.flowing = false;
    pair.client.unpipe();
    pair.upstream?.unpipe();
    pair.client.pause();
    pair.upstream?.pause();
  }

  #reset(pair: Pair): void {
    if (!this.#pairs.has(pair)) return;
    this.#pairs.delete(pair);
    this.stats.reset++;
    if (!pair.client.destroyed) pair.client.resetAndDestroy();
    if (pair.upstream !== undefined && !pair.upstream.destroyed) pair.upstream.resetAndDestroy();
  }

  #drop(pair: Pair): void {
    if (!this.#pairs.delete(pair)) return;
    pair.upstream?.destroy();
  }
}

function parseAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(":");
  const port = Number(address.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 1 || port > 65_535)
    throw new RangeError(`not HOST:PORT: ${address}`);
  return { host: address.slice(0, i), port };
}
