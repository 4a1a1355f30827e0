/**
 * The pooled CSPRNG source: every result is fresh, the right length, and the only copy of its
 * bytes (the pool region it came from is zeroed before it is returned, and it shares no buffer
 * with the pool or another result), so zeroize() on it erases those bytes everywhere we can reach.
 */
import test from "ava";
import {
  POOL_BYTES,
  POOL_DIRECT_BYTES,
  PooledRandomSource,
  nodeRandomSource,
  zeroize,
} from "../../src/crypto/random-source.js";

/** A fill that writes a recognisable non-zero pattern and remembers every buffer it filled. */
function recordingFill(): { fill: (buf: Uint8Array) => void; filled: Uint8Array[] } {
  const filled: Uint8Array[] = [];
  let n = 0;
  return {
    filled,
    fill: (buf) => {
      filled.push(buf);
      for (let i = 0; i < buf.length; i++) buf[i] = (n++ % 255) + 1;
    },
  };
}

test("nodeRandomSource returns distinct values of the asked length, each with its own buffer", (t) => {
  const seen = new Set<string>();
  const buffers = new Set<ArrayBufferLike>();
  for (let i = 0; i < 5000; i++) {
    const length = [12, 16, 32][i % 3]!;
    const b = nodeRandomSource.bytes(length);
    t.is(b.length, length);
    t.is(b.byteOffset, 0);
    t.is(b.buffer.byteLength, length);
    buffers.add(b.buffer);
    seen.add(Buffer.from(b).toString("hex"));
  }
  t.is(seen.size, 5000);
  t.is(buffers.size, 5000);
});

test("lengths from 0 to past the pool size, through the pool and past it", (t) => {
  for (const length of [
    0,
    1,
    2,
    31,
    32,
    33,
    POOL_DIRECT_BYTES - 1,
    POOL_DIRECT_BYTES,
    POOL_BYTES,
    POOL_BYTES + 1,
    100_000,
  ]) {
    const b = nodeRandomSource.bytes(length);
    t.is(b.length, length, `length ${length}`);
    t.is(b.buffer.byteLength, length, `own buffer for length ${length}`);
    // 24 or more random bytes all zero happens with probability 2^-192.
    if (length >= 24)
      t.false(
        b.every((x) => x === 0),
        `length ${length}`,
      );
  }
});

test("bad lengths are refused", (t) => {
  for (const length of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    t.throws(() => nodeRandomSource.bytes(length), { instanceOf: RangeError }, String(length));
  }
});

test("the pool region a result came from is zeroed at once; the rest of the pool is not handed out twice", (t) => {
  const { fill, filled } = recordingFill();
  const source = new PooledRandomSource(fill);
  const a = source.bytes(32);
  t.is(filled.length, 1, "one fill for the first request");
  const pool = filled[0]!;
  t.is(pool.length, POOL_BYTES);
  t.not(a.buffer, pool.buffer);
  t.deepEqual(
    [...a],
    Array.from({ length: 32 }, (_, i) => i + 1),
    "the result is the pool's first bytes",
  );
  t.true(
    pool.subarray(0, 32).every((x) => x === 0),
    "and they are zeroed in the pool",
  );
  t.false(
    pool.subarray(32).some((x) => x === 0),
    "the rest of the pool is untouched",
  );

  const b = source.bytes(12);
  t.deepEqual(
    [...b],
    Array.from({ length: 12 }, (_, i) => 33 + i),
  );
  t.true(pool.subarray(0, 44).every((x) => x === 0));

  // zeroize on a result reaches its bytes and nothing else.
  zeroize(a);
  t.true(a.every((x) => x === 0));
  t.deepEqual(
    [...b],
    Array.from({ length: 12 }, (_, i) => 33 + i),
  );
});

test("a request that does not fit in what is left of the pool refills it first", (t) => {
  const { fill, filled } = recordingFill();
  const source = new PooledRandomSource(fill);
  const per = POOL_DIRECT_BYTES - 1;
  const whole = Math.floor(POOL_BYTES / per);
  for (let i = 0; i < whole; i++) source.bytes(per);
  t.is(filled.length, 1);
  const pool = filled[0]!;
  t.true(pool.subarray(0, whole * per).every((x) => x === 0));
  const next = source.bytes(per);
  t.is(filled.length, 2, "refilled");
  t.is(filled[1], pool, "the same pool, refilled in place");
  t.true(pool.subarray(0, per).every((x) => x === 0));
  t.false(next.every((x) => x === 0));
});

test("requests of POOL_DIRECT_BYTES or more are filled directly and leave the pool alone", (t) => {
  const { fill, filled } = recordingFill();
  const source = new PooledRandomSource(fill);
  source.bytes(16);
  const pool = filled[0]!;
  const before = Uint8Array.from(pool);
  for (const length of [POOL_DIRECT_BYTES, POOL_BYTES, POOL_BYTES * 3 + 7]) {
    const big = source.bytes(length);
    t.is(big.length, length);
    t.is(filled.at(-1), big, `length ${length} filled in place`);
    t.false(big.some((x) => x === 0));
  }
  t.deepEqual(pool, before, "the pool is unchanged");
  t.is(filled.length, 4);
});
