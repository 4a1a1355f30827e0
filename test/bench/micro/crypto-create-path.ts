/**
 * In-process micro-benchmark of the key-service crypto one CreateKey costs (issue 10): the random
 * source, the binding encoder, the envelope, the record MAC and the client request entry. It runs
 * every case against this build and, side by side in the same run, against a baseline build
 * (another checkout's dist/, e.g. main's), alternating rounds so machine load hits both alike.
 *
 *   npm run build --silent
 *   node --expose-gc --max-semi-space-size=64 dist/test/bench/micro/crypto-create-path.js [baseline-dist]
 *
 * Prints, per case, microseconds per call (median of the rounds) and bytes allocated per call
 * (V8 heap plus ArrayBuffer backing stores, over a run with no GC in it; "gc" marks a run where
 * one happened and the figure undercounts). Not a test: it asserts nothing and is never run by ava.
 */
import { PerformanceObserver } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import path from "node:path";

type Case = { name: string; fn: () => unknown };
type Build = { label: string; cases: Case[] };

const WARMUP = 20_000;
const CALLS = 100_000;
const ROUNDS = 5;
const ALLOC_CALLS = 1_000;

async function casesOf(distRoot: string, label: string): Promise<Build> {
  const load = (rel: string): Promise<Record<string, unknown>> =>
    import(pathToFileURL(path.join(distRoot, rel)).href) as Promise<Record<string, unknown>>;
  /* eslint-disable @typescript-eslint/no-explicit-any */
  const random = (await load("src/crypto/random-source.js")) as any;
  const binding = (await load("src/crypto/binding.js")) as any;
  const envelope = (await load("src/crypto/envelope.js")) as any;
  const mac = (await load("src/crypto/record-mac.js")) as any;
  const codec = (await load("src/keys/record-codec.js")) as any;
  const requests = (await load("src/keys/client-requests.js")) as any;
  /* eslint-enable @typescript-eslint/no-explicit-any */
  const src = random.nodeRandomSource;
  const kek = src.bytes(32);
  const macKey = src.bytes(32);
  const keys = { kek, recordMacKey: macKey };
  const salt = src.bytes(16);
  const now = new Date(1_764_000_000_000);
  const record = {
    id: "0192f3a4-5b6c-8d7e-9f80-1a2b3c4d5e6f",
    project: "bench",
    scope: "s17",
    name: "bench",
    secretType: "symmetric",
    algorithm: "AES",
    bitLength: 256,
    parentId: "",
    createdAt: now,
    updatedAt: now,
    state: "active",
  };
  const material = src.bytes(32);
  const matBinding = codec.materialBinding(record);
  const sealed = envelope.sealEnvelope(kek, 1, material, matBinding, src);
  const body = {
    method: "CreateKey",
    attributes: { project: "bench", scope: "s17", name: "bench", bitLength: 256, secretType: "symmetric" },
  };
  const entry = {
    identity: "user:bench@example",
    requestId: "3f0c8a9e-1d2b-4c5d-8e6f-7a8b9c0d1e2f",
    method: "CreateKey",
    project: "bench",
    keyId: record.id,
    fingerprint: "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=",
    createdAt: now,
  };
  const store = new requests.ClientRequestStore(undefined, undefined);
  const withMaterial = { ...record, wrappedMaterial: sealed };
  let serial = 0;
  /** The crypto of one CreateKey with a client request id on the ring, as key-service.ts runs it. */
  const createPath = (): unknown => {
    const scope = `s${serial % 64}`;
    const requestId = `3f0c8a9e-1d2b-4c5d-8e6f-${100_000_000_000 + serial++}`;
    const fresh = src.bytes(32);
    const id = requests.requestKeyId(salt, entry.identity, requestId, "bench", scope);
    const r: Record<string, unknown> = { ...record, id, scope };
    r.wrappedMaterial = envelope.sealEnvelope(kek, 1, fresh, codec.materialBinding(r), src);
    random.zeroize(fresh);
    const fingerprint = requests.requestFingerprint(keys, {
      ...body,
      attributes: { ...body.attributes, scope },
    });
    return store.putOps({ ...entry, requestId, keyId: id, fingerprint }, keys);
  };
  return {
    label,
    cases: [
      { name: "random.bytes(32)", fn: () => src.bytes(32) },
      { name: "random.bytes(12)", fn: () => src.bytes(12) },
      { name: "encodeBinding(material)", fn: () => binding.encodeBinding(matBinding) },
      { name: "sealEnvelope(32 B)", fn: () => envelope.sealEnvelope(kek, 1, material, matBinding, src) },
      { name: "openEnvelope(32 B)", fn: () => envelope.openEnvelope(kek, sealed, matBinding) },
      { name: "recordMac(keyRecord)", fn: () => mac.recordMac(macKey, codec.keyRecordBinding(withMaterial)) },
      { name: "encodeKeyRecord", fn: () => codec.encodeKeyRecord(withMaterial, macKey) },
      { name: "requestFingerprint", fn: () => requests.requestFingerprint(keys, body) },
      {
        name: "requestKeyId",
        fn: () => requests.requestKeyId(salt, entry.identity, entry.requestId, "bench", "s17"),
      },
      { name: "encodeClientRequest", fn: () => codec.encodeClientRequest(entry, macKey) },
      { name: "clientRequests.putOps", fn: () => store.putOps(entry, keys) },
      { name: "create path (all of it)", fn: createPath },
    ],
  };
}

let gcs = 0;
new PerformanceObserver((list) => {
  gcs += list.getEntries().length;
}).observe({ entryTypes: ["gc"] });

function timeUs(fn: () => unknown, calls: number): number {
  let sink: unknown;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) sink = fn();
  const ns = Number(process.hrtime.bigint() - t0);
  if (sink === Symbol.for("never")) console.log(sink);
  return ns / 1000 / calls;
}

async function allocBytes(fn: () => unknown): Promise<string> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return "(run with --expose-gc)";
  gc();
  await settle(); // the observer reports the forced GC late: let it, before counting
  const before = gcs;
  const m0 = process.memoryUsage();
  const keep: unknown[] = [];
  for (let i = 0; i < ALLOC_CALLS; i++) keep.push(fn());
  const m1 = process.memoryUsage();
  await settle();
  const heap = (m1.heapUsed - m0.heapUsed - ALLOC_CALLS * 8) / ALLOC_CALLS; // minus the keep array's slots
  const ab = (m1.arrayBuffers - m0.arrayBuffers) / ALLOC_CALLS;
  return `${heap.toFixed(0)} heap + ${ab.toFixed(0)} ab${gcs !== before ? " (gc)" : ""}`;
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 30));

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const here = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../..");
  const builds = [await casesOf(here, "this")];
  const baseline = process.argv[2];
  if (baseline !== undefined) builds.unshift(await casesOf(path.resolve(baseline), "baseline"));
  const names = builds[0]!.cases.map((c) => c.name);
  const rows: string[][] = [["case", ...builds.flatMap((b) => [`${b.label} us`, `${b.label} bytes/call`])]];
  for (const [i, name] of names.entries()) {
    for (const b of builds) timeUs(b.cases[i]!.fn, WARMUP);
    const times = builds.map(() => [] as number[]);
    for (let r = 0; r < ROUNDS; r++) {
      for (const [j, b] of builds.entries()) times[j]!.push(timeUs(b.cases[i]!.fn, CALLS / ROUNDS));
    }
    const allocs: string[] = [];
    for (const b of builds) allocs.push(await allocBytes(b.cases[i]!.fn));
    rows.push([name, ...builds.flatMap((_, j) => [median(times[j]!).toFixed(3), allocs[j]!])]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const r of rows) console.log(r.map((cell, c) => cell.padEnd(widths[c]!)).join("  "));
}

await main();
