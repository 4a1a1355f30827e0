/**
 * The Barbican REST listener under abusive load (issue 11 items 1-3; the REST twin of
 * test/e2e/unauthenticated-memory.test.ts), against a real peer in its mTLS mode whose `restLimits`
 * tunables the test lowers in config.json. For HOLD_MS, from their own loopback addresses:
 * - clients without a certificate send GETs as fast as keep-alive connections allow, and POSTs
 *   announcing 15 KB bodies (refused 401 before a byte of the body is read);
 * - a slowloris opens SLOW_CONNECTIONS TLS connections at once and trickles their headers;
 * - an authenticated identity sends 1 MB bodies (413) and bodies that never finish.
 * Meanwhile an authenticated caller from 127.0.0.1 reads a secret's payload and stores secrets. The
 * peer's RSS must grow by less than RSS_GROWTH_MAX, the caller must never fail, the slow connections
 * must be capped at restLimits.connectionsPerSourceMax and all closed by the peer, and the flooding
 * address must be cooled down (its connections closed at accept). Every loop is bounded in count
 * and time.
 */
import test from "ava";
import { randomBytes } from "node:crypto";
import { promises as fs, readFileSync } from "node:fs";
import * as https from "node:https";
import * as tls from "node:tls";

import { spawnPeer } from "../helpers/peer-process.js";
import { restCall } from "../helpers/rest-call.js";

const HOLD_MS = 15_000;
const RSS_GROWTH_MAX = 64 * 1024 * 1024;
const SLOW_CONNECTIONS = 100;
const FLOOD_WORKERS = 8;
const FLOOD_REQUESTS_MAX = 50_000;
const POSTS_MAX = 5_000;
const ABUSE_REQUESTS_MAX = 500;

/** The tunables this test sets (far below their defaults, so that the test sees them act). */
const LIMITS = {
  connectionsPerSourceMax: 32,
  bodyBytesMax: 4_096,
  headersTimeoutMs: 2_000,
  requestTimeoutMs: 4_000,
  refusalsPerSourcePerSecondMax: 20,
  refusalCooldownMs: 3_000,
};

test("REST under unauthenticated, slow and oversize load: RSS grows by less than 64 MiB, an authenticated caller never fails, slow connections are capped and closed, the flooding address is cooled down", async (t) => {
  const peer = await spawnPeer({
    editConfig: (config) => {
      config.rest = { listen: "127.0.0.1:0", mtls: true };
      config.restLimits = LIMITS;
    },
  });
  t.teardown(() => peer.teardown());
  const pid = peer.pid!;
  const port = Number(peer.restAddress!.split(":").pop());
  const base = `https://127.0.0.1:${port}`;
  const ca = readFileSync(peer.admin.ca, "utf8");
  const identity = async (name: string, project: string) => {
    const files = await peer.issueIdentity(name, "service", [project]);
    const [cert, key] = await Promise.all([fs.readFile(files.cert, "utf8"), fs.readFile(files.key, "utf8")]);
    return { cert, key };
  };
  const svc = await identity("svc", "p1");
  const abuser = await identity("abuser", "p2");
  const agents: https.Agent[] = [];
  const agent = (options: https.AgentOptions): https.Agent => {
    const a = new https.Agent({ ca, rejectUnauthorized: false, ...options });
    agents.push(a);
    return a;
  };
  t.teardown(() => {
    for (const a of agents) a.destroy();
  });
  const legit = agent({ ...svc, keepAlive: true, maxSockets: 2 });
  const call = (method: string, path: string, json?: unknown, accept?: string) =>
    restCall(`${base}${path}`, {
      method,
      agent: legit,
      headers: { "X-Project-Id": "p1", ...(accept !== undefined ? { Accept: accept } : {}) },
      timeoutMs: 20_000,
      ...(json !== undefined ? { json } : {}),
    });
  const secretBody = (bytes: number) => ({
    payload: randomBytes(bytes).toString("base64"),
    payload_content_type: "application/octet-stream",
    payload_content_encoding: "base64",
    secret_type: "opaque",
  });

  // The lowered body bound is the config's: 4,000 bytes of payload (a 5.4 KB body) fit the default
  // (20,000 bytes), not 4,096.
  const tooLarge = await call("POST", "/v1/secrets/", secretBody(4_000));
  t.is(tooLarge.status, 413, tooLarge.text);
  const known = randomBytes(32);
  const stored = await call("POST", "/v1/secrets/", {
    ...secretBody(0),
    payload: known.toString("base64"),
  });
  t.is(stored.status, 201, stored.text);
  const payloadPath = `${new URL(stored.json!.secret_ref as string).pathname}/payload`;
  // Warm up the legitimate path so its own allocations are in the baseline.
  for (let i = 0; i < 30; i++) await call("GET", payloadPath, undefined, "application/octet-stream");
  const baseline = rssBytes(pid);

  const stopAt = Date.now() + HOLD_MS;
  let maxRss = baseline;
  const sampler = (async () => {
    while (Date.now() < stopAt) {
      maxRss = Math.max(maxRss, rssBytes(pid));
      await sleep(250);
    }
  })();

  let legitOk = 0;
  let legitStores = 0;
  const legitFailures: string[] = [];
  const legitimate = (async () => {
    for (let i = 0; Date.now() < stopAt; i++) {
      try {
        const got = await call("GET", payloadPath, undefined, "application/octet-stream");
        if (got.status === 200 && got.body.equals(known)) legitOk += 1;
        else legitFailures.push(`GET payload: ${got.status} ${got.text.slice(0, 200)}`);
        if (i % 5 === 4) {
          const s = await call("POST", "/v1/secrets/", secretBody(32));
          if (s.status === 201) legitStores += 1;
          else legitFailures.push(`store: ${s.status} ${s.text.slice(0, 200)}`);
        }
      } catch (err) {
        legitFailures.push((err as Error).message);
      }
      await sleep(200);
    }
  })();

  // Clients without a certificate, keep-alive GETs as fast as they are answered, from 127.0.0.2.
  const flood = { requests: 0, unauthenticated: 0, other: 0, connectionErrors: 0 };
  const floodAgent = agent({ keepAlive: true, maxSockets: FLOOD_WORKERS, localAddress: "127.0.0.2" });
  const flooder = async (): Promise<void> => {
    while (Date.now() < stopAt && flood.requests < FLOOD_REQUESTS_MAX) {
      flood.requests += 1;
      try {
        const r = await restCall(`${base}/v1/secrets`, {
          agent: floodAgent,
          headers: { "X-Project-Id": "p1" },
          timeoutMs: 5_000,
        });
        if (r.status === 401 && r.json?.code === 401) flood.unauthenticated += 1;
        else flood.other += 1;
      } catch {
        flood.connectionErrors += 1;
        await sleep(20);
      }
    }
  };

  // Clients without a certificate announcing 15 KB bodies, from 127.0.0.3.
  const posts = { requests: 0, unauthenticated: 0, other: 0, connectionErrors: 0 };
  const postAgent = agent({ keepAlive: true, maxSockets: 4, localAddress: "127.0.0.3" });
  const poster = async (): Promise<void> => {
    const body = JSON.stringify({ ...secretBody(0), payload: "A".repeat(15_000) });
    while (Date.now() < stopAt && posts.requests < POSTS_MAX) {
      posts.requests += 1;
      try {
        const r = await restCall(`${base}/v1/secrets/`, {
          method: "POST",
          agent: postAgent,
          headers: { "X-Project-Id": "p1", "Content-Type": "application/json" },
          body,
          timeoutMs: 5_000,
        });
        if (r.status === 401) posts.unauthenticated += 1;
        else posts.other += 1;
      } catch {
        posts.connectionErrors += 1;
        await sleep(20);
      }
    }
  };

  // A slowloris from 127.0.0.4: SLOW_CONNECTIONS at once, each trickling a header line a second.
  const slow = { handshaken: 0, openMax: 0, open: 0, closedByPeer: 0, refusedAtAccept: 0 };
  const slowSockets: tls.TLSSocket[] = [];
  t.teardown(() => {
    for (const s of slowSockets) s.destroy();
  });
  const slowDone = Promise.all(
    Array.from(
      { length: SLOW_CONNECTIONS },
      () =>
        new Promise<void>((resolve) => {
          // localAddress goes through to net.connect (missing from ConnectionOptions' type).
          const s = tls.connect({
            host: "127.0.0.1",
            port,
            localAddress: "127.0.0.4",
            ca,
            rejectUnauthorized: false,
            servername: "localhost",
          } as tls.ConnectionOptions);
          slowSockets.push(s);
          let secure = false;
          let timer: NodeJS.Timeout | undefined;
          s.on("secureConnect", () => {
            secure = true;
            slow.handshaken += 1;
            slow.open += 1;
            slow.openMax = Math.max(slow.openMax, slow.open);
            s.write("GET /v1/secrets HTTP/1.1\r\nHost: localhost\r\n");
            let n = 0;
            timer = setInterval(() => {
              if (Date.now() < stopAt) s.write(`X-Slow-${n++}: x\r\n`);
            }, 1_000);
          });
          s.on("error", () => {});
          s.on("close", () => {
            if (timer !== undefined) clearInterval(timer);
            if (secure) {
              slow.open -= 1;
              // Closed before the test ended it: the peer's headersTimeout.
              if (Date.now() < stopAt) slow.closedByPeer += 1;
            } else {
              slow.refusedAtAccept += 1;
            }
            resolve();
          });
          // Bounded: whatever is still open when the hold ends is closed by the test.
          setTimeout(() => s.destroy(), HOLD_MS + 1_000).unref();
        }),
    ),
  );

  // An authenticated identity from 127.0.0.5: 1 MB bodies (413), and bodies that never finish.
  const abuse = { tooLarge: 0, other: 0, slowBodiesClosed: 0, errors: 0, requests: 0 };
  const abuseAgent = agent({ ...abuser, keepAlive: false, localAddress: "127.0.0.5" });
  const oversize = async (): Promise<void> => {
    const body = Buffer.alloc(1024 * 1024, 0x41);
    while (Date.now() < stopAt && abuse.requests < ABUSE_REQUESTS_MAX) {
      abuse.requests += 1;
      try {
        const r = await restCall(`${base}/v1/secrets/`, {
          method: "POST",
          agent: abuseAgent,
          headers: { "Content-Type": "application/json" },
          body,
          timeoutMs: 10_000,
        });
        if (r.status === 413) abuse.tooLarge += 1;
        else abuse.other += 1;
      } catch {
        // The peer may close the connection while the client is still sending: also a refusal.
        abuse.errors += 1;
      }
      await sleep(50);
    }
  };
  const slowBody = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const req = https.request(`${base}/v1/secrets/`, {
        method: "POST",
        agent: abuseAgent,
        headers: { "Content-Type": "application/json", "Content-Length": "4000" },
      });
      req.on("error", () => {});
      req.on("response", (res) => res.resume());
      req.on("close", () => {
        clearInterval(timer);
        if (Date.now() < stopAt) abuse.slowBodiesClosed += 1;
        resolve();
      });
      req.write('{"payload": "');
      const timer = setInterval(() => {
        if (Date.now() < stopAt) req.write("A");
        else req.destroy();
      }, 500);
    });

  await Promise.all([
    sampler,
    legitimate,
    ...Array.from({ length: FLOOD_WORKERS }, flooder),
    ...Array.from({ length: 4 }, poster),
    slowDone,
    oversize(),
    ...Array.from({ length: 8 }, slowBody),
  ]);

  const growth = maxRss - baseline;
  t.log(
    `peer RSS baseline ${mib(baseline)} MiB, max ${mib(maxRss)} MiB, growth ${mib(growth)} MiB; ` +
      `flood ${JSON.stringify(flood)}; posts ${JSON.stringify(posts)}; slow ${JSON.stringify(slow)}; ` +
      `abuse ${JSON.stringify(abuse)}; legitimate reads ${legitOk}, stores ${legitStores}, failures ${legitFailures.length}`,
  );
  t.true(growth < RSS_GROWTH_MAX, `RSS grew by ${mib(growth)} MiB`);
  t.deepEqual(legitFailures, []);
  t.true(legitOk >= 10, `only ${legitOk} payload reads succeeded during the load`);
  t.true(legitStores >= 2, `only ${legitStores} stores succeeded during the load`);
  // Told why, and then cooled down: more than 20 refusals a second from one address.
  t.true(flood.unauthenticated > 0, "a client without a certificate is told 401");
  t.is(flood.other, 0, "a client without a certificate gets nothing but 401");
  t.true(flood.connectionErrors > 0, "the flooding address's connections were closed during its cool-down");
  t.true(posts.unauthenticated > 0);
  t.is(posts.other, 0);
  // At most connectionsPerSourceMax slow connections ever got past accept; the peer closed them all.
  t.true(slow.handshaken > 0);
  t.true(
    slow.openMax <= LIMITS.connectionsPerSourceMax,
    `${slow.openMax} slow connections open at once, limit ${LIMITS.connectionsPerSourceMax}`,
  );
  t.true(slow.refusedAtAccept > 0, "connections beyond the per-address bound are closed at accept");
  t.is(slow.closedByPeer, slow.handshaken, "every slow connection was closed by the peer (headersTimeoutMs)");
  t.true(abuse.tooLarge + abuse.errors > 0 && abuse.other === 0, "1 MB bodies are refused");
  t.is(abuse.slowBodiesClosed, 8, "every never-finished body was cut off by the peer (requestTimeoutMs)");

  // And afterwards the peer serves as before.
  const after = await call("GET", payloadPath, undefined, "application/octet-stream");
  t.is(after.status, 200);
  t.true(after.body.equals(known));
});

function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (m === null) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

const mib = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
