import test from "ava";
import { inspect } from "node:util";

import { KeyCache } from "../../src/client/key-cache.js";

function clock(startMs = 1_000_000): { nowMs: () => number; advance: (ms: number) => void } {
  let now = startMs;
  return { nowMs: () => now, advance: (ms) => void (now += ms) };
}

test("a cached key comes back as an equal copy, not the stored buffer", (t) => {
  const cache = new KeyCache<string>({ entriesMax: 4, ageMaxMs: 1000 });
  const material = Buffer.from("00112233445566778899aabbccddeeff", "hex");
  cache.set("k1", material, "meta");
  material.fill(0xff); // the caller's buffer is not the cache's
  const first = cache.get("k1")!;
  t.is(first.material.toString("hex"), "00112233445566778899aabbccddeeff");
  first.material.fill(0); // nor is the returned copy
  t.is(cache.get("k1")!.material.toString("hex"), "00112233445566778899aabbccddeeff");
  t.is(cache.get("k1")!.meta, "meta");
});

test("entries older than ageMaxMs are gone, and their material is zeroed", (t) => {
  const c = clock();
  const cache = new KeyCache<null>({ entriesMax: 4, ageMaxMs: 1000, nowMs: c.nowMs });
  cache.set("k", Buffer.alloc(16, 7), null);
  const stored = internalBuffer(cache, "k");
  c.advance(999);
  t.truthy(cache.get("k"));
  c.advance(1);
  t.is(cache.get("k"), undefined);
  t.is(cache.size, 0);
  t.true(stored.every((b) => b === 0));
});

test("prune drops every expired entry at once", (t) => {
  const c = clock();
  const cache = new KeyCache<null>({ entriesMax: 10, ageMaxMs: 100, nowMs: c.nowMs });
  cache.set("a", Buffer.alloc(16, 1), null);
  c.advance(60);
  cache.set("b", Buffer.alloc(16, 2), null);
  c.advance(50);
  cache.prune();
  t.is(cache.size, 1);
  t.truthy(cache.get("b"));
});

test("beyond entriesMax the least recently used key is evicted and zeroed", (t) => {
  const cache = new KeyCache<null>({ entriesMax: 2, ageMaxMs: 60_000 });
  cache.set("a", Buffer.alloc(16, 1), null);
  cache.set("b", Buffer.alloc(16, 2), null);
  const a = internalBuffer(cache, "a");
  const b = internalBuffer(cache, "b");
  t.truthy(cache.get("a")); // a is now more recent than b
  cache.set("c", Buffer.alloc(16, 3), null);
  t.is(cache.size, 2);
  t.is(cache.get("b"), undefined);
  t.true(b.every((x) => x === 0));
  t.true(a.every((x) => x === 1));
});

test("delete and clear zero the material they drop", (t) => {
  const cache = new KeyCache<null>({ entriesMax: 4, ageMaxMs: 60_000 });
  cache.set("a", Buffer.alloc(32, 9), null);
  cache.set("b", Buffer.alloc(32, 9), null);
  const a = internalBuffer(cache, "a");
  const b = internalBuffer(cache, "b");
  t.true(cache.delete("a"));
  t.false(cache.delete("a"));
  t.true(a.every((x) => x === 0));
  cache.clear();
  t.is(cache.size, 0);
  t.true(b.every((x) => x === 0));
});

test("the cache never shows its material through JSON or inspect", (t) => {
  const cache = new KeyCache<{ id: string }>({ entriesMax: 4, ageMaxMs: 60_000 });
  const material = Buffer.from("a1b2c3d4e5f60718293a4b5c6d7e8f90", "hex");
  cache.set("k", material, { id: "k" });
  const shown = JSON.stringify({ cache }) + inspect(cache, { showHidden: true, depth: 10 }) + String(cache);
  t.false(shown.includes("a1b2c3d4"));
  t.false(shown.includes(material.toString("base64")));
  t.true(shown.includes('"size":1'));
});

test("bounds must be positive", (t) => {
  t.throws(() => new KeyCache({ entriesMax: 0, ageMaxMs: 1 }), { instanceOf: RangeError });
  t.throws(() => new KeyCache({ entriesMax: 1, ageMaxMs: 0 }), { instanceOf: RangeError });
  t.throws(() => new KeyCache({ entriesMax: 1.5, ageMaxMs: 10 }), { instanceOf: RangeError });
});

/**
 * The cache's own buffer for `id`. get() copies out of it with Buffer.from, so
 * watching that one call hands the test the very buffer eviction must zero.
 */
function internalBuffer(cache: KeyCache<unknown>, id: string): Buffer {
  const original = Buffer.from;
  let captured: Buffer | undefined;
  (Buffer as { from: unknown }).from = (...args: unknown[]) => {
    if (Buffer.isBuffer(args[0]) && captured === undefined) captured = args[0];
    return (original as (...a: unknown[]) => Buffer)(...args);
  };
  try {
    cache.get(id);
  } finally {
    (Buffer as { from: unknown }).from = original;
  }
  if (captured === undefined) throw new Error(`no cached buffer for ${id}`);
  return captured;
}
