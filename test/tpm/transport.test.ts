import test from "ava";
import net from "node:net";
import { DeviceTransport } from "../../tpm/transport/device-transport.js";
import { RecordingTransport } from "../../tpm/transport/recording-transport.js";
import { TcpTransport } from "../../tpm/transport/tcp-transport.js";
import { TpmTransportError } from "../../tpm/transport/transport-error.js";
import { startProvisionedSwtpm } from "./swtpm-fixture.js";

/** TPM2_GetRandom(bytesRequested): tag NO_SESSIONS, size 12, CC 0x17b. */
function getRandom(bytesRequested: number): Uint8Array {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(0x8001, 0);
  b.writeUInt32BE(12, 2);
  b.writeUInt32BE(0x17b, 6);
  b.writeUInt16BE(bytesRequested, 10);
  return b;
}

function responseCode(r: Uint8Array): number {
  return Buffer.from(r).readUInt32BE(6);
}

/** Bytes of random data in a GetRandom response (TPM2B_DIGEST after the header). */
function randomLength(r: Uint8Array): number {
  return Buffer.from(r).readUInt16BE(10);
}

test("tcp transport: GetRandom on swtpm returns a complete success response", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  const tr = await f.connect();
  const r = await tr.send(getRandom(16));
  t.is(responseCode(r), 0);
  t.is(r.length, 12 + 16);
  t.is(randomLength(r), 16);
});

test("tcp transport: concurrent sends are queued and each gets its own response, in order", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  const tr = await f.connect();
  const sizes = Array.from({ length: 24 }, (_, i) => i + 1);
  const responses = await Promise.all(sizes.map((n) => tr.send(getRandom(n))));
  t.deepEqual(
    responses.map((r) => randomLength(r)),
    sizes,
  );
  t.true(responses.every((r) => responseCode(r) === 0));
});

test("tcp transport: a malformed command is refused before it reaches the TPM, and the transport stays usable", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  const tr = await f.connect();
  const wrongSize = Buffer.from(getRandom(8));
  wrongSize.writeUInt32BE(40, 2);
  const e1 = await t.throwsAsync(tr.send(wrongSize), { instanceOf: TpmTransportError });
  t.is(e1?.code, "bad-command");
  const e2 = await t.throwsAsync(tr.send(new Uint8Array(4)), { instanceOf: TpmTransportError });
  t.is(e2?.code, "bad-command");
  t.is(responseCode(await tr.send(getRandom(8))), 0);
});

test("tcp transport: a swtpm killed with SIGKILL fails the next command with a typed error, then refuses", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  const tr = await f.connect();
  t.is(responseCode(await tr.send(getRandom(8))), 0);
  process.kill(f.swtpm.pid, "SIGKILL");
  await f.swtpm.stop();
  const e = await t.throwsAsync(tr.send(getRandom(8)), { instanceOf: TpmTransportError });
  t.true(["io", "closed"].includes(e?.code ?? ""), `code ${String(e?.code)}`);
  const again = await t.throwsAsync(tr.send(getRandom(8)), { instanceOf: TpmTransportError });
  t.is(again?.code, "closed");
});

test("tcp transport: connecting to a port nobody listens on gives a connect error", async (t) => {
  const port = await withServer(
    () => undefined,
    async (p) => p,
  ); // bound, then closed again
  const e = await t.throwsAsync(TcpTransport.connect({ host: "127.0.0.1", port }), {
    instanceOf: TpmTransportError,
  });
  t.is(e?.code, "connect");
});

/** Runs a scripted TCP peer (a mock TPM: swtpm cannot be made to send malformed frames). */
async function withServer<T>(
  onCommand: (socket: net.Socket, command: Buffer) => void,
  body: (port: number) => Promise<T>,
): Promise<T> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on("data", (d) => onCommand(s, d));
    s.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  try {
    return await body(port);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

function header(size: number): Buffer {
  const b = Buffer.alloc(10);
  b.writeUInt16BE(0x8001, 0);
  b.writeUInt32BE(size, 2);
  return b;
}

test("tcp transport (mock TPM): a response cut short by a closed connection is a short-response error", async (t) => {
  await withServer(
    (s) => {
      s.write(Buffer.concat([header(100), Buffer.alloc(20)]));
      s.end();
    },
    async (port) => {
      const tr = await TcpTransport.connect({ host: "127.0.0.1", port });
      const e = await t.throwsAsync(tr.send(getRandom(8)), { instanceOf: TpmTransportError });
      t.is(e?.code, "short-response");
      await tr.close();
    },
  );
});

test("tcp transport (mock TPM): a header announcing more than the limit is an oversize-response error", async (t) => {
  await withServer(
    (s) => s.write(header(1_000_000)),
    async (port) => {
      const tr = await TcpTransport.connect({ host: "127.0.0.1", port });
      const e = await t.throwsAsync(tr.send(getRandom(8)), { instanceOf: TpmTransportError });
      t.is(e?.code, "oversize-response");
      await tr.close();
    },
  );
});

test("tcp transport (mock TPM): bytes beyond the announced size are an oversize-response error", async (t) => {
  await withServer(
    (s) => s.write(Buffer.concat([header(12), Buffer.alloc(2), Buffer.from("extra")])),
    async (port) => {
      const tr = await TcpTransport.connect({ host: "127.0.0.1", port });
      const e = await t.throwsAsync(tr.send(getRandom(8)), { instanceOf: TpmTransportError });
      t.is(e?.code, "oversize-response");
      await tr.close();
    },
  );
});

test("tcp transport (mock TPM): a header smaller than itself is a bad-response-header error", async (t) => {
  await withServer(
    (s) => s.write(header(4)),
    async (port) => {
      const tr = await TcpTransport.connect({ host: "127.0.0.1", port });
      const e = await t.throwsAsync(tr.send(getRandom(8)), { instanceOf: TpmTransportError });
      t.is(e?.code, "bad-response-header");
      await tr.close();
    },
  );
});

test("tcp transport (mock TPM): a response split across many writes is reassembled exactly", async (t) => {
  const body = Buffer.from("0123456789abcdef");
  const frame = Buffer.concat([header(10 + body.length), body]);
  await withServer(
    (s) => {
      for (let i = 0; i < frame.length; i += 3) s.write(frame.subarray(i, i + 3));
    },
    async (port) => {
      const tr = await TcpTransport.connect({ host: "127.0.0.1", port });
      t.deepEqual(Buffer.from(await tr.send(getRandom(8))), frame);
      await tr.close();
    },
  );
});

test("tcp transport (mock TPM): a TPM that never answers times out, and the transport then refuses", async (t) => {
  await withServer(
    () => undefined,
    async (port) => {
      const tr = await TcpTransport.connect({ host: "127.0.0.1", port, commandTimeoutMs: 200 });
      const e = await t.throwsAsync(tr.send(getRandom(8)), { instanceOf: TpmTransportError });
      t.is(e?.code, "timeout");
      const after = await t.throwsAsync(tr.send(getRandom(8)), { instanceOf: TpmTransportError });
      t.is(after?.code, "closed");
      await tr.close();
    },
  );
});

test("device transport: opening a missing device is a device-not-found error (no TPM device in tests)", async (t) => {
  const e = await t.throwsAsync(DeviceTransport.open({ path: "/dev/lockbox-no-such-tpm" }), {
    instanceOf: TpmTransportError,
  });
  t.is(e?.code, "device-not-found");
});

test("device transport on /dev/null (a real device that answers nothing): bad-response-header, then refuses", async (t) => {
  const tr = await DeviceTransport.open({ path: "/dev/null" });
  t.teardown(() => tr.close());
  const e = await t.throwsAsync(tr.send(getRandom(8)), { instanceOf: TpmTransportError });
  t.is(e?.code, "bad-response-header");
  const again = await t.throwsAsync(tr.send(getRandom(8)), { instanceOf: TpmTransportError });
  t.is(again?.code, "closed");
});

test("recording transport: keeps each command and response from a real swtpm, copied", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  const rec = new RecordingTransport(await f.connect());
  const cmd = Buffer.from(getRandom(4));
  const r1 = await rec.send(cmd);
  const r2 = await rec.send(getRandom(5));
  cmd.fill(0); // the record must not alias the caller's buffer
  const log = rec.exchanges();
  t.is(log.length, 2);
  t.deepEqual(Buffer.from(log[0]!.command), Buffer.from(getRandom(4)));
  t.deepEqual(Buffer.from(log[0]!.response!), Buffer.from(r1));
  t.deepEqual(Buffer.from(log[1]!.response!), Buffer.from(r2));
  const bad = await t.throwsAsync(rec.send(new Uint8Array(3)));
  t.truthy(bad);
  t.is(rec.exchanges().length, 3);
  t.truthy(rec.exchanges()[2]!.error);
});
