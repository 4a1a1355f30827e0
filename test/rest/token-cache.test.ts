import test from "ava";
import { TokenCache } from "../../src/rest/token-cache.js";

test("an entry is served until its expiry and not after", (t) => {
  const c = new TokenCache<string>(10);
  c.set("a", "alice", 1_000, 0);
  t.is(c.get("a", 999), "alice");
  t.is(c.get("a", 1_000), undefined);
  t.is(c.size, 0);
});

test("a full cache drops expired entries first, then the oldest: it never holds more than entriesMax", (t) => {
  const c = new TokenCache<number>(3);
  c.set("old", 1, 100, 0);
  c.set("b", 2, 10_000, 0);
  c.set("c", 3, 10_000, 0);
  c.set("d", 4, 10_000, 200); // "old" has expired: it goes, the others stay
  t.deepEqual([c.get("b", 200), c.get("c", 200), c.get("d", 200)], [2, 3, 4]);
  for (let i = 0; i < 1_000; i++) c.set(`k${i}`, i, 10_000, 300);
  t.is(c.size, 3);
  t.is(c.get("k999", 300), 999);
  t.is(c.get("b", 300), undefined);
});

test("re-setting a key replaces its value and expiry", (t) => {
  const c = new TokenCache<string>(2);
  c.set("a", "x", 100, 0);
  c.set("a", "y", 500, 0);
  t.is(c.get("a", 200), "y");
  t.is(c.size, 1);
});
