/**
 * Bad input on every route of the Barbican REST API (issue 11 acceptance), against a real peer in
 * its mTLS mode (no Keystone needed to reach the routes): malformed JSON, wrong types, unknown
 * fields, bad base64, oversize payloads and bodies, bad ids and queries each get a 4xx answer in
 * Barbican's error document, and change nothing: the project's secrets, orders and a known
 * secret's payload are the same afterwards. Also the mTLS mode's own rules: no certificate is
 * 401 whatever X-Project-Id says; a project outside the identity's is 403.
 */
import test from "ava";
import fc from "fast-check";
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import { Agent } from "node:https";

import { spawnPeer, type IdentityFiles, type PeerProcess } from "../helpers/peer-process.js";
import { restCall, type RestAnswer } from "../helpers/rest-call.js";

let peer: PeerProcess;
let base: string;
let agent: Agent;
let anonymous: Agent;
let knownPath: string;
const knownPayload = randomBytes(32);
const RUNS = 40;

test.before(async () => {
  peer = await spawnPeer({
    editConfig: (config) => {
      config.rest = { listen: "127.0.0.1:0", mtls: true };
    },
  });
  const svc: IdentityFiles = await peer.issueIdentity("svc", "service", ["p1", "p2"]);
  const [ca, cert, key] = await Promise.all([svc.ca, svc.cert, svc.key].map((f) => fs.readFile(f, "utf8")));
  agent = new Agent({ ca, cert, key, keepAlive: true, maxSockets: 4 });
  anonymous = new Agent({ ca, keepAlive: false });
  base = `https://${peer.restAddress!}`;
  const stored = await call("POST", "/v1/secrets/", {
    json: {
      payload: knownPayload.toString("base64"),
      payload_content_type: "application/octet-stream",
      payload_content_encoding: "base64",
      secret_type: "symmetric",
      algorithm: "aes",
    },
  });
  if (stored.status !== 201) throw new Error(`store: ${stored.status} ${stored.text}`);
  knownPath = new URL(stored.json!.secret_ref as string).pathname;
  const ordered = await call("POST", "/v1/orders", {
    json: { type: "key", meta: { algorithm: "aes", bit_length: 256 } },
  });
  if (ordered.status !== 202) throw new Error(`order: ${ordered.status} ${ordered.text}`);
});

test.after.always(async () => {
  agent?.destroy();
  anonymous?.destroy();
  await peer?.teardown();
});

function call(
  method: string,
  path: string,
  opts: { json?: unknown; body?: string | Buffer; headers?: Record<string, string>; agent?: Agent } = {},
): Promise<RestAnswer> {
  return restCall(`${base}${path}`, {
    method,
    agent: opts.agent ?? agent,
    headers: { "X-Project-Id": "p1", ...(opts.headers ?? {}) },
    ...(opts.json !== undefined ? { json: opts.json } : {}),
    ...(opts.body !== undefined ? { body: opts.body } : {}),
  });
}

/** What must not change: the project's secrets and orders, and the known secret's bytes. */
async function snapshot(): Promise<string> {
  const secrets = await call("GET", "/v1/secrets?limit=100");
  const orders = await call("GET", "/v1/orders?limit=100");
  const payload = await call("GET", `${knownPath}/payload`, {
    headers: { Accept: "application/octet-stream" },
  });
  return JSON.stringify([secrets.json, orders.json, payload.body.toString("hex")]);
}

function isErrorDocument(r: RestAnswer): boolean {
  const j = r.json;
  return (
    r.status >= 400 &&
    r.status < 500 &&
    j !== undefined &&
    j.code === r.status &&
    typeof j.title === "string" &&
    typeof j.description === "string" &&
    Object.keys(j).length === 3
  );
}

const validSecret = () => ({
  payload: randomBytes(32).toString("base64"),
  payload_content_type: "application/octet-stream",
  payload_content_encoding: "base64",
  secret_type: "symmetric",
  algorithm: "aes",
  bit_length: 256,
});

const wrongType = fc.oneof(fc.integer(), fc.boolean(), fc.constant([]), fc.constant({}), fc.double());
const junkText = fc.string({ maxLength: 64 });

/** A secret body with exactly one defect. */
const badSecretBody = fc.oneof(
  fc
    .tuple(
      fc.constantFrom(
        "payload",
        "payload_content_type",
        "payload_content_encoding",
        "secret_type",
        "algorithm",
        "name",
        "expiration",
        "mode",
      ),
      wrongType,
    )
    .map(([k, v]) => ({ ...validSecret(), [k]: v })),
  fc
    .tuple(
      fc.constantFrom("bit_length"),
      fc.oneof(fc.string(), fc.constant(-8), fc.constant(1.5), fc.constant(100)),
    )
    .map(([k, v]) => ({ ...validSecret(), [k]: v })),
  fc
    .tuple(
      fc
        .string({ minLength: 1, maxLength: 20 })
        .filter(
          (k) =>
            ![
              "payload",
              "payload_content_type",
              "payload_content_encoding",
              "secret_type",
              "algorithm",
              "bit_length",
              "name",
              "expiration",
              "mode",
              "__proto__",
            ].includes(k),
        ),
      fc.jsonValue(),
    )
    .map(([k, v]) => ({ ...validSecret(), [k]: v })),
  fc
    .string({ minLength: 1, maxLength: 40 })
    .filter((s) => /[^A-Za-z0-9+/=]/.test(s))
    .map((p) => ({ ...validSecret(), payload: p })),
  fc.constantFrom("AAA", "A===", "====", "AB=C").map((p) => ({ ...validSecret(), payload: p })),
  fc.constant({ ...validSecret(), payload: randomBytes(12_000).toString("base64") }),
  fc.constantFrom("rsa", "des", "").map((a) => ({ ...validSecret(), algorithm: a })),
  fc
    .constantFrom("public", "private", "certificate", "SYMMETRIC")
    .map((t) => ({ ...validSecret(), secret_type: t })),
  fc
    .constantFrom("2001-01-01T00:00:00", "not a time", "2030-13-45T99:99:99")
    .map((e) => ({ ...validSecret(), expiration: e })),
  fc.constant({ ...validSecret(), payload: "" }),
  fc.constant({ ...validSecret(), payload_content_encoding: "hex" }),
);

const badOrderBody = fc.oneof(
  fc.constant({ type: "asymmetric", meta: { algorithm: "rsa", bit_length: 2048 } }),
  fc.constant({ type: "key" }),
  fc.constant({ type: "key", meta: { algorithm: "aes", bit_length: 100 } }),
  fc.constant({ type: "key", meta: { algorithm: "des", bit_length: 256 } }),
  fc.constant({ type: "key", meta: { algorithm: "aes" } }),
  fc
    .tuple(
      fc.constantFrom("algorithm", "bit_length", "name", "mode", "expiration", "payload_content_type"),
      wrongType,
    )
    .map(([k, v]) => ({ type: "key", meta: { algorithm: "aes", bit_length: 256, [k]: v } })),
  fc
    .string({ minLength: 1, maxLength: 12 })
    .filter((k) => !["type", "meta", "__proto__"].includes(k))
    .map((k) => ({ type: "key", meta: { algorithm: "aes", bit_length: 256 }, [k]: 1 })),
  fc
    .string({ minLength: 1, maxLength: 12 })
    .filter(
      (k) =>
        ![
          "algorithm",
          "bit_length",
          "name",
          "mode",
          "expiration",
          "payload_content_type",
          "__proto__",
        ].includes(k),
    )
    .map((k) => ({ type: "key", meta: { algorithm: "aes", bit_length: 256, [k]: 1 } })),
);

const badJsonText = fc.oneof(
  junkText.filter((s) => {
    try {
      const v: unknown = JSON.parse(s);
      return typeof v !== "object" || v === null || Array.isArray(v);
    } catch {
      return true;
    }
  }),
  fc.constant('{"payload": "AAAA"'),
  fc.constant("[]"),
  fc.constant("null"),
);

const badId = fc.oneof(
  fc.uuid(),
  fc
    .string({ minLength: 1, maxLength: 40 })
    .filter((s) => !s.includes("/") && !s.includes("?") && !s.includes("#")),
);

test.serial(
  "POST /v1/secrets/ with a defective body is a 4xx error document and stores nothing",
  async (t) => {
    const before = await snapshot();
    await fc.assert(
      fc.asyncProperty(badSecretBody, async (body) => {
        const r = await call("POST", "/v1/secrets/", { json: body });
        return isErrorDocument(r) || (t.log(JSON.stringify(body).slice(0, 200), r.status, r.text), false);
      }),
      { numRuns: RUNS },
    );
    await fc.assert(
      fc.asyncProperty(badJsonText, async (text) => {
        const r = await call("POST", "/v1/secrets/", {
          body: text,
          headers: { "Content-Type": "application/json" },
        });
        return isErrorDocument(r) && r.status === 400;
      }),
      { numRuns: RUNS },
    );
    const wrongMedia = await call("POST", "/v1/secrets/", {
      body: JSON.stringify(validSecret()),
      headers: { "Content-Type": "text/plain" },
    });
    t.is(wrongMedia.status, 415);
    t.true(isErrorDocument(wrongMedia));
    const huge = await call("POST", "/v1/secrets/", {
      body: "x".repeat(30_000),
      headers: { "Content-Type": "application/json" },
    });
    t.is(huge.status, 413);
    t.true(isErrorDocument(huge));
    t.is(await snapshot(), before);
  },
);

test.serial("POST /v1/orders/ with a defective body is a 4xx error document and makes no key", async (t) => {
  const before = await snapshot();
  await fc.assert(
    fc.asyncProperty(fc.oneof(badOrderBody, badJsonText), async (body) => {
      const r =
        typeof body === "string"
          ? await call("POST", "/v1/orders/", { body, headers: { "Content-Type": "application/json" } })
          : await call("POST", "/v1/orders/", { json: body });
      return isErrorDocument(r) || (t.log(JSON.stringify(body).slice(0, 200), r.status, r.text), false);
    }),
    { numRuns: RUNS },
  );
  t.is(await snapshot(), before);
});

test.serial("every id route with an unknown or malformed id is 404, changing nothing", async (t) => {
  const before = await snapshot();
  const consumer = { service: "cinder", resource_type: "volume", resource_id: "v" };
  await fc.assert(
    fc.asyncProperty(badId, fc.constantFrom(0, 1, 2, 3, 4, 5, 6, 7, 8), async (id, which) => {
      const p = encodeURIComponent(id);
      const [method, path, json] = (
        [
          ["GET", `/v1/secrets/${p}`],
          ["GET", `/v1/secrets/${p}/payload`],
          ["DELETE", `/v1/secrets/${p}`],
          ["GET", `/v1/secrets/${p}/consumers`],
          ["POST", `/v1/secrets/${p}/consumers`, consumer],
          ["DELETE", `/v1/secrets/${p}/consumers`, consumer],
          ["GET", `/v1/orders/${p}`],
          ["DELETE", `/v1/orders/${p}`],
          ["GET", `/v1/secrets/${p}/payload`],
        ] as const
      )[which]!;
      const r = await call(method, path, json !== undefined ? { json } : {});
      return (isErrorDocument(r) && r.status === 404) || (t.log(method, path, r.status, r.text), false);
    }),
    { numRuns: RUNS * 2 },
  );
  t.is(await snapshot(), before);
});

test.serial(
  "consumer bodies, list queries and methods that are wrong are 4xx error documents, changing nothing",
  async (t) => {
    const before = await snapshot();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.record({
            service: wrongType,
            resource_type: fc.constant("volume"),
            resource_id: fc.constant("v"),
          }),
          fc.constant({ service: "cinder", resource_type: "volume" }),
          fc.constant({ service: "", resource_type: "volume", resource_id: "v" }),
          fc.constant({ service: "x".repeat(300), resource_type: "volume", resource_id: "v" }),
          fc.constant({ service: "cinder", resource_type: "volume", resource_id: "v", extra: 1 }),
        ),
        fc.constantFrom("POST", "DELETE"),
        async (body, method) => isErrorDocument(await call(method, `${knownPath}/consumers`, { json: body })),
      ),
      { numRuns: RUNS },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(
          "limit=-1",
          "limit=abc",
          "limit=1000",
          "offset=-5",
          "offset=99999999999",
          "limit=1&limit=2",
          "bits=x",
        ),
        fc.constantFrom("/v1/secrets", "/v1/orders"),
        async (q, path) => {
          const r = await call("GET", `${path}?${q}`);
          return (isErrorDocument(r) && r.status === 400) || (path === "/v1/orders" && q === "bits=x");
        },
      ),
      { numRuns: RUNS },
    );
    for (const [method, path] of [
      ["PUT", "/v1/secrets"],
      ["PATCH", knownPath],
      ["POST", `${knownPath}/payload`],
      ["GET", "/v1/containers"],
      ["GET", "/v2/secrets"],
    ] as const) {
      const r = await call(method, path);
      t.true(isErrorDocument(r), `${method} ${path}: ${r.status} ${r.text}`);
    }
    const asText = await call("GET", `${knownPath}/payload`, { headers: { Accept: "text/plain" } });
    t.is(asText.status, isUtf8(knownPayload) ? 200 : 406);
    t.is(
      (await call("GET", `${knownPath}/payload`, { headers: { Accept: "application/json" } })).status,
      406,
    );
    t.is(await snapshot(), before);
  },
);

test.serial(
  "mTLS mode: no client certificate is 401 whatever X-Project-Id says; a project outside the identity's is 403",
  async (t) => {
    const bare = await call("GET", "/v1/secrets", { agent: anonymous, headers: { "X-Project-Id": "p1" } });
    t.is(bare.status, 401);
    t.true(isErrorDocument(bare));
    const bareWrite = await call("POST", "/v1/secrets/", { agent: anonymous, json: validSecret() });
    t.is(bareWrite.status, 401);
    const other = await call("GET", "/v1/secrets", { headers: { "X-Project-Id": "p3" } });
    t.is(other.status, 403);
    t.true(isErrorDocument(other));
    // Two projects: the identity must say which.
    t.is((await restCall(`${base}/v1/secrets`, { agent })).status, 400);
    const p2 = await call("GET", "/v1/secrets", { headers: { "X-Project-Id": "p2" } });
    t.deepEqual(p2.json, { secrets: [], total: 0 });
    // The version documents are open, as in Barbican.
    const root = await call("GET", "/", { agent: anonymous });
    t.is(root.status, 300);
    t.like(root.json, { versions: { values: [{ id: "v1", status: "stable", max_version: "1.1" }] } });
    t.is((await call("GET", "/v1", { agent: anonymous })).status, 200);
  },
);

function isUtf8(b: Buffer): boolean {
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(b);
    return true;
  } catch {
    return false;
  }
}
