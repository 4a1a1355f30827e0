import test from "ava";
import { connect, createServer, type Server, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { TcpFaultProxy } from "./tcp-fault-proxy.js";

/** An upstream that echoes what it reads (or, with `read: false`, never reads). */
async function upstream(read = true): Promise<{ server: Server; address: string; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    s.on("error", () => {});
    if (read) s.pipe(s);
    else s.pause();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return { server, address: `127.0.0.1:${(server.address() as { port: number }).port}`, sockets };
}

async function dial(address: string): Promise<Socket> {
  const [host, port] = address.split(":");
  const s = connect({ host: host!, port: Number(port) });
  await new Promise<void>((resolve, reject) => {
    s.once("connect", resolve);
    s.once("error", reject);
  });
  return s;
}

/** The next `n` bytes the socket reads, or undefined if none come within `ms`. */
function readBytes(s: Socket, n: number, ms: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const done = (v: Buffer | undefined): void => {
      clearTimeout(timer);
      s.off("data", onData);
      s.pause();
      resolve(v);
    };
    const onData = (b: Buffer): void => {
      chunks.push(b);
      got += b.length;
      if (got >= n) done(Buffer.concat(chunks));
    };
    const timer = setTimeout(() => done(undefined), ms);
    s.on("data", onData);
    s.resume();
  });
}

function closedBy(s: Socket): Promise<string> {
  return new Promise((resolve) => {
    let code = "closed";
    s.once("error", (e: NodeJS.ErrnoException) => (code = e.code ?? "error"));
    s.once("close", () => resolve(code));
  });
}

test("the fault proxy forwards both ways, resets open and new connections while cut, and proxies again after heal", async (t) => {
  const up = await upstream();
  const proxy = await TcpFaultProxy.start({ upstream: up.address });
  t.teardown(async () => {
    await proxy.close();
    up.server.close();
  });
  const a = await dial(proxy.address);
  a.write("hello");
  t.is((await readBytes(a, 5, 5_000))?.toString(), "hello");

  const closed = closedBy(a);
  proxy.cut("reset");
  t.is(await closed, "ECONNRESET");
  // A new connection is reset as it arrives.
  const b = await dial(proxy.address).catch((e: NodeJS.ErrnoException) => e);
  if (b instanceof Error) t.is(b.code, "ECONNRESET");
  else t.is(await closedBy(b), "ECONNRESET");

  proxy.heal();
  const c = await dial(proxy.address);
  c.write("again");
  t.is((await readBytes(c, 5, 5_000))?.toString(), "again");
  // Healing a link that is not cut changes nothing: bytes still pass once.
  proxy.heal();
  c.write("once");
  t.is((await readBytes(c, 4, 5_000))?.toString(), "once");
  t.is(await readBytes(c, 1, 300), undefined, "no byte doubled");
  c.destroy();
  t.true(proxy.currentStats().reset >= 2);
});

test("a blackhole delivers nothing either way and loses nothing: after heal the held bytes arrive in order, on open and new connections", async (t) => {
  const up = await upstream();
  const proxy = await TcpFaultProxy.start({ upstream: up.address });
  t.teardown(async () => {
    await proxy.close();
    up.server.close();
  });
  const a = await dial(proxy.address);
  a.write("one");
  t.is((await readBytes(a, 3, 5_000))?.toString(), "one");
  proxy.cut("blackhole");
  a.write("two");
  t.is(await readBytes(a, 1, 300), undefined, "nothing comes back through a blackhole");
  // A connection made during the blackhole is held, not dialled upstream.
  const sessionsBefore = up.sockets.length;
  const b = await dial(proxy.address);
  b.write("new");
  t.is(await readBytes(b, 1, 300), undefined);
  t.is(up.sockets.length, sessionsBefore, "the held connection did not reach the upstream");
  proxy.heal();
  t.is((await readBytes(a, 3, 5_000))?.toString(), "two");
  t.is((await readBytes(b, 3, 5_000))?.toString(), "new");
  a.destroy();
  b.destroy();
});

test("setUpstream sends new connections to a restarted peer's new address; a dead upstream resets the client", async (t) => {
  const first = await upstream();
  const proxy = await TcpFaultProxy.start({ upstream: first.address });
  t.teardown(() => proxy.close());
  const a = await dial(proxy.address);
  const aClosed = closedBy(a);
  a.write("x");
  t.is((await readBytes(a, 1, 5_000))?.toString(), "x");
  // The peer dies: its open connections end, and a dial to its old address is refused.
  for (const s of first.sockets) s.resetAndDestroy();
  first.server.close();
  t.is(await aClosed, "ECONNRESET");
  const refused = await dial(proxy.address);
  t.is(await closedBy(refused), "ECONNRESET");

  const second = await upstream();
  t.teardown(() => second.server.close());
  proxy.setUpstream(second.address);
  const b = await dial(proxy.address);
  b.write("y");
  t.is((await readBytes(b, 1, 5_000))?.toString(), "y");
  b.destroy();
});

test("the proxy's buffers stay bounded when the upstream stops reading, and connections over connectionsMax are reset", async (t) => {
  const up = await upstream(false);
  const proxy = await TcpFaultProxy.start({ upstream: up.address, connectionsMax: 2 });
  t.teardown(async () => {
    await proxy.close();
    up.server.close();
  });
  const a = await dial(proxy.address);
  const chunk = Buffer.alloc(1024 * 1024, 7);
  // Offer 32 MiB to a peer that reads none of it (bounded: at most 32 writes, 15 s). The deadline is
  // generous: with 2 s a loaded machine got through fewer than 17 writes and the sender held < 16 MiB.
  let maxHeld = 0;
  const deadline = Date.now() + 15_000;
  for (let i = 0; i < 32 && Date.now() < deadline; i++) {
    a.write(chunk);
    await sleep(50);
    maxHeld = Math.max(maxHeld, proxy.bufferedBytesMax());
  }
  t.true(a.writableLength > 16 * 1024 * 1024, "the sender is the one holding what cannot be delivered");
  t.true(maxHeld < 2 * 1024 * 1024, `the proxy held at most ${maxHeld} bytes of one connection`);

  const b = await dial(proxy.address);
  const c = await dial(proxy.address).catch((e: NodeJS.ErrnoException) => e);
  if (c instanceof Error) t.is(c.code, "ECONNRESET");
  else t.is(await closedBy(c), "ECONNRESET");
  t.is(proxy.currentStats().open, 2);
  a.destroy();
  b.destroy();
});
