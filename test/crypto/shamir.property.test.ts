/**
 * Shamir over GF(256) and the recovery shares built on it: any k shares of a
 * split rebuild the CMK exactly; k-1 shares are refused (by count, and, when
 * the count is lied about, by the CMK's check value, never by luck); k-1
 * shares carry no information (every secret is equally consistent with them);
 * a damaged, edited or foreign share is named.
 */
import fc from "fast-check";
import test from "ava";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isMasterKeyError } from "../../src/crypto/master-key-error.js";
import type { RandomSource } from "../../src/crypto/random-source.js";
import {
  decodeRecoveryShare,
  encodeRecoveryShare,
  makeRecoveryShares,
  readRecoveryShareFile,
  recoverMasterKey,
  writeRecoveryShareFiles,
  type RecoveryShare,
} from "../../src/crypto/recovery-share.js";
import { combineShares, gfDiv, gfMul, splitSecret } from "../../src/crypto/shamir.js";

const bytesOf = (seed: readonly number[]): RandomSource => {
  let i = 0;
  return { bytes: (n) => Uint8Array.from({ length: n }, () => seed[i++ % seed.length]!) };
};
const osRandom: RandomSource = { bytes: (n) => new Uint8Array(randomBytes(n)) };

/** A split's parameters and a k-subset of share positions, as fast-check arbitraries. */
const splitArb = fc
  .record({ shares: fc.integer({ min: 1, max: 12 }), secret: fc.uint8Array({ minLength: 1, maxLength: 40 }) })
  .chain(({ shares, secret }) =>
    fc.record({
      shares: fc.constant(shares),
      secret: fc.constant(secret),
      threshold: fc.integer({ min: 1, max: shares }),
      order: fc.shuffledSubarray([...Array(shares).keys()], { minLength: shares, maxLength: shares }),
      coefficients: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 64 }),
    }),
  );

test("GF(256): multiplication matches the AES field (0x57 * 0x83 = 0xc1) and division inverts it", (t) => {
  t.is(gfMul(0x57, 0x83), 0xc1); // FIPS-197 §4.2
  t.is(gfMul(0x57, 0x13), 0xfe);
  for (let a = 0; a < 256; a++) for (let b = 1; b < 256; b++) t.is(gfDiv(gfMul(a, b), b), a);
  t.throws(() => gfDiv(1, 0), { instanceOf: RangeError });
});

test("any k shares of a split rebuild the secret exactly, in any order", (t) => {
  fc.assert(
    fc.property(splitArb, ({ shares, secret, threshold, order, coefficients }) => {
      const all = splitSecret(secret, threshold, shares, bytesOf(coefficients));
      const pick = order.slice(0, threshold).map((i) => all[i]!);
      return Buffer.from(combineShares(pick)).equals(Buffer.from(secret));
    }),
    { numRuns: 300 },
  );
  t.pass();
});

test("k-1 shares say nothing: for every secret byte, exactly as many polynomials give the same k-1 share values", (t) => {
  // k = 2: one share of one byte; over all 256 choices of the random coefficient, every share value
  // occurs exactly once, whatever the secret. k = 3: two shares, 65536 coefficient pairs, every pair
  // of share values exactly once. So the k-1 shares are uniform and independent of the secret.
  for (const secret of [0x00, 0x5a, 0xff]) {
    const counts = new Map<number, number>();
    for (let a = 0; a < 256; a++) {
      const [s] = splitSecret(Uint8Array.of(secret), 2, 2, bytesOf([a]));
      counts.set(s!.value[0]!, (counts.get(s!.value[0]!) ?? 0) + 1);
    }
    t.is(counts.size, 256);
    t.true([...counts.values()].every((c) => c === 1));
  }
  const pairs = new Uint8Array(65536);
  for (let a = 0; a < 256; a++)
    for (let b = 0; b < 256; b++) {
      const [s1, s2] = splitSecret(Uint8Array.of(0x42), 3, 3, bytesOf([a, b]));
      pairs[(s1!.value[0]! << 8) | s2!.value[0]!]++;
    }
  t.true(pairs.every((c) => c === 1));
});

const clusterId = randomUUID();

function split(threshold: number, shares: number, cmk = new Uint8Array(randomBytes(32))) {
  return { cmk, all: makeRecoveryShares({ cmk, clusterId, epoch: 3, threshold, shares, random: osRandom }) };
}

test("recoverMasterKey: any k of n shares give the CMK and its epoch; k-1 are refused as SHARES_TOO_FEW", (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 7 }).chain((n) =>
        fc.record({
          n: fc.constant(n),
          k: fc.integer({ min: 2, max: n }),
          order: fc.shuffledSubarray([...Array(n).keys()], { minLength: n, maxLength: n }),
        }),
      ),
      ({ n, k, order }) => {
        const { cmk, all } = split(k, n);
        const got = recoverMasterKey(order.slice(0, k).map((i) => all[i]!));
        if (!Buffer.from(got.key).equals(Buffer.from(cmk)) || got.epoch !== 3) return false;
        // All n also work (the first k are combined, the rest must agree on the split).
        if (!Buffer.from(recoverMasterKey(all).key).equals(Buffer.from(cmk))) return false;
        try {
          recoverMasterKey(order.slice(0, k - 1).map((i) => all[i]!));
          return false;
        } catch (e) {
          return isMasterKeyError(e, "SHARES_TOO_FEW");
        }
      },
    ),
    { numRuns: 100 },
  );
  t.pass();
});

test("k-1 shares with the threshold edited down (checksum recomputed) are refused by the check value, every time", (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 2, max: 6 }), (k) => {
      const { all } = split(k, k + 1);
      // A forger who rewrites the files: threshold k-1, checksums valid again.
      const lied = all
        .slice(0, k - 1)
        .map((s) => decodeRecoveryShare(encodeRecoveryShare({ ...s, threshold: k - 1 }), `share ${s.index}`));
      try {
        recoverMasterKey(lied);
        return false;
      } catch (e) {
        return isMasterKeyError(e, "SHARES_WRONG_KEY");
      }
    }),
    { numRuns: 60 },
  );
  t.pass();
});

test("a share whose bytes were replaced (checksum recomputed) makes the combination SHARES_WRONG_KEY, not a wrong key", (t) => {
  const { all } = split(3, 5);
  const forged: RecoveryShare = { ...all[1]!, share: new Uint8Array(randomBytes(32)) };
  const reparsed = decodeRecoveryShare(encodeRecoveryShare(forged), "forged");
  const err = t.throws(() => recoverMasterKey([all[0]!, reparsed, all[2]!]));
  t.true(isMasterKeyError(err, "SHARES_WRONG_KEY"));
});

test("shares of another cluster, epoch or split, and a share given twice, are SHARES_MIXED", (t) => {
  const a = split(2, 3);
  const b = split(2, 3);
  const other = makeRecoveryShares({
    cmk: a.cmk,
    clusterId: randomUUID(),
    epoch: 3,
    threshold: 2,
    shares: 3,
  });
  const cases: [string, RecoveryShare[], { clusterId?: string }][] = [
    ["two splits", [a.all[0]!, b.all[1]!], {}],
    ["another cluster", [a.all[0]!, other[1]!], {}],
    ["another epoch", [a.all[0]!, { ...a.all[1]!, epoch: 4 }], {}],
    ["twice", [a.all[0]!, a.all[0]!], {}],
    ["not this peer's cluster", [a.all[0]!, a.all[1]!], { clusterId: randomUUID() }],
  ];
  for (const [what, shares, options] of cases) {
    const err = t.throws(() => recoverMasterKey(shares, options), undefined, what);
    t.true(isMasterKeyError(err, "SHARES_MIXED"), what);
  }
  t.true(
    isMasterKeyError(
      t.throws(() => recoverMasterKey([])),
      "SHARES_TOO_FEW",
    ),
  );
});

test("a share file with any one character changed is SHARE_DAMAGED naming the file, never accepted as another share", (t) => {
  const { all } = split(2, 3);
  const text = encodeRecoveryShare(all[0]!);
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: text.length - 1 }),
      fc.integer({ min: 32, max: 126 }),
      (pos, code) => {
        const c = String.fromCharCode(code);
        if (text[pos] === c) return true;
        const changed = text.slice(0, pos) + c + text.slice(pos + 1);
        try {
          const parsed = decodeRecoveryShare(changed, "custodian-1.json");
          // Only a change JSON ignores (whitespace between tokens) may parse, and then to the same share.
          return encodeRecoveryShare(parsed) === text;
        } catch (e) {
          return isMasterKeyError(e, "SHARE_DAMAGED") && (e as Error).message.includes("custodian-1.json");
        }
      },
    ),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (s) => {
      try {
        decodeRecoveryShare(s, "x");
        return false;
      } catch (e) {
        return isMasterKeyError(e, "SHARE_DAMAGED");
      }
    }),
  );
  t.true(
    isMasterKeyError(
      t.throws(() => decodeRecoveryShare("x".repeat(5000), "big")),
      "SHARE_DAMAGED",
    ),
  );
});

test("share files are written 0600, one per share, never over an existing file, and read back", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-shares-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const { cmk, all } = split(2, 3);
  const paths = await writeRecoveryShareFiles(dir, all);
  t.is(paths.length, 3);
  for (const p of paths) t.is((await stat(p)).mode & 0o777, 0o600);
  const read = await Promise.all(paths.map((p) => readRecoveryShareFile(p)));
  t.deepEqual(Buffer.from(recoverMasterKey([read[2]!, read[0]!]).key), Buffer.from(cmk));
  const text = await readFile(paths[0]!, "utf8");
  t.false(text.includes(Buffer.from(cmk).toString("hex")), "a share is not the key");
  await t.throwsAsync(writeRecoveryShareFiles(dir, all), { code: "EEXIST" });
  await writeFile(join(dir, "short.json"), text.slice(0, 50));
  const err = await t.throwsAsync(readRecoveryShareFile(join(dir, "short.json")));
  t.true(isMasterKeyError(err, "SHARE_DAMAGED"));
  t.true(
    isMasterKeyError(await t.throwsAsync(readRecoveryShareFile(join(dir, "none.json"))), "SHARE_DAMAGED"),
  );
});
