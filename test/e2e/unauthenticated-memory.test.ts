/**
 * Memory under attack by clients without a certificate (issue 8, item 1): 20
 * raw HTTP/2 connections, no client certificate, try 20,000 gRPC streams in
 * all, each announcing a 65,000-byte message and sending 64,000 bytes of it,
 * and hold them for 20 s. The peer's RSS must grow by less than 64 MiB, and a
 * legitimate client's GetKey must keep succeeding throughout.
 *
 * The attack speaks HTTP/2 with node:http2 directly (not grpc-js), so nothing
 * on the attacking side is polite: streams are never ended, flow control is
 * the peer's only defence.
 */
import test from "ava";
import { readFileSync } from "node:fs";
import * as http2 from "node:http2";

import { spawnPeer } from "../helpers/peer-process.js";

const CONNECTIONS = 20;
const STREAMS_TOTAL = 20_000;
const ANNOUNCED_BYTES = 65_000;
const SENT_BYTES = 64_000;
const HOLD_MS = 20_000;
const RSS_GROWTH_MAX = 64 * 1024 * 1024;

test("20 connections without a certificate holding 20,000 half-sent 64 KB streams grow the peer's RSS by less than 64 MiB; GetKey keeps working", async (t) => {
  const peer = await spawnPeer();
  t.teardown(() => peer.teardown());
  const pid = peer.pid!;
  const client = peer.client(peer.admin, { cache: false, deadlineMs: 5_000, attemptsMax: 1 });
  const key = await client.createKey({ project: "p", scope: "s", name: "k" });
  // Warm up the legitimate path so its own allocations are in the baseline.
  for (let i = 0; i < 50; i++) await client.getKey(key.id, { bypassCache: true });
  const baseline = rssBytes(pid);

  const body = Buffer.alloc(5 + SENT_BYTES, 0x41);
  body.writeUInt8(0, 0);
  body.writeUInt32BE(ANNOUNCED_BYTES, 1);
  const ca = readFileSync(peer.admin.ca);
  const sessions: http2.ClientHttp2Session[] = [];
  const everySession: http2.ClientHttp2Session[] = [];
  let opened = 0;
  let refusedStreams = 0;
  let unauthenticatedAnswers = 0;
  let connects = 0;
  const connect = (): http2.ClientHttp2Session => {
    const session = http2.connect(`https://${peer.address}`, {
      ca,
      rejectUnauthorized: false,
      servername: "localhost",
    });
    session.on("error", () => {});
    everySession.push(session);
    connects += 1;
    return session;
  };
  for (let c = 0; c < CONNECTIONS; c++) sessions.push(connect());
  t.teardown(() => {
    for (const s of everySession) s.destroy();
  });

  let maxRss = baseline;
  let getKeyOk = 0;
  const getKeyFailures: string[] = [];
  const stopAt = Date.now() + HOLD_MS;
  const sampler = (async () => {
    while (Date.now() < stopAt) {
      maxRss = Math.max(maxRss, rssBytes(pid));
      await sleep(250);
    }
  })();
  const legitimate = (async () => {
    while (Date.now() < stopAt) {
      try {
        const got = await client.getKey(key.id, { bypassCache: true });
        if (got.key.id === key.id) getKeyOk += 1;
      } catch (err) {
        getKeyFailures.push((err as Error).message);
      }
      await sleep(200);
    }
  })();
  // Open the streams round-robin over the connections, a few at a time so the
  // attacker's own event loop keeps up.
  for (let i = 0; i < STREAMS_TOTAL && Date.now() < stopAt; i++) {
    let session = sessions[i % CONNECTIONS]!;
    // A persistent attacker: a connection the peer closed is replaced at once.
    if (session.destroyed || session.closed) {
      session = sessions[i % CONNECTIONS] = connect();
    }
    try {
      const stream = session.request({
        ":method": "POST",
        ":path": "/lockbox.v1.KeyService/CreateKey",
        "content-type": "application/grpc",
        te: "trailers",
      });
      stream.on("error", () => {});
      stream.on("response", (headers) => {
        if (headers["grpc-status"] === "16") unauthenticatedAnswers += 1;
      });
      stream.on("close", () => {
        if (stream.rstCode !== undefined && stream.rstCode !== 0) refusedStreams += 1;
      });
      stream.write(body);
      opened += 1;
    } catch {
      refusedStreams += 1;
    }
    if (i % 200 === 199) await sleep(10);
  }
  await Promise.all([sampler, legitimate]);
  const growth = maxRss - baseline;
  t.log(
    `peer RSS baseline ${mib(baseline)} MiB, max ${mib(maxRss)} MiB, growth ${mib(growth)} MiB; ` +
      `connections ${connects}, streams opened ${opened}, answered UNAUTHENTICATED ${unauthenticatedAnswers}, ` +
      `refused or reset ${refusedStreams}; GetKey ok ${getKeyOk}, failed ${getKeyFailures.length}`,
  );
  t.true(growth < RSS_GROWTH_MAX, `RSS grew by ${mib(growth)} MiB`);
  t.deepEqual(getKeyFailures, []);
  t.true(getKeyOk >= 20, `only ${getKeyOk} GetKey calls succeeded during the attack`);
  t.true(unauthenticatedAnswers > 0, "a client without a certificate is told why: UNAUTHENTICATED");
});

function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (m === null) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

const mib = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
