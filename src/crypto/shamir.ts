/**
 * Shamir secret sharing over GF(2^8) (the AES field, x^8 + x^4 + x^3 + x + 1),
 * byte by byte: each byte of the secret is the constant term of its own random
 * polynomial of degree k-1, and share i holds every polynomial's value at x = i.
 * Any k shares give the secret by Lagrange interpolation at x = 0; k-1 shares
 * are consistent with every possible secret, each with the same number of
 * polynomials, so they say nothing about it (recovery-share.ts adds the check
 * value that refuses a wrong combination).
 *
 * Table lookups depend on secret bytes; the shares are combined once, offline,
 * at recovery, where that side channel is not reachable.
 */
import type { RandomSource } from "./random-source.js";
import { zeroize } from "./random-source.js";

/** Share indices (the x coordinates) are 1..255; 0 is the secret itself. */
export const SHARE_INDEX_MAX = 255;

export interface ShamirShare {
  /** x coordinate, 1..255. */
  readonly index: number;
  /** The polynomials' values at `index`, one byte per secret byte. */
  readonly value: Uint8Array;
}

const EXP = new Uint8Array(510);
const LOG = new Uint8Array(256);
{
  // 3 generates the multiplicative group of GF(2^8) with the AES polynomial.
  let x = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = x;
    LOG[x] = i;
    x ^= (x << 1) ^ (x & 0x80 ? 0x11b : 0); // x * 3 = x * 2 + x
    x &= 0xff;
  }
  for (let i = 255; i < 510; i++) EXP[i] = EXP[i - 255]!;
}

export function gfMul(a: number, b: number): number {
  if (a === 0 || b === 0) return 0;
  return EXP[LOG[a]! + LOG[b]!]!;
}

export function gfDiv(a: number, b: number): number {
  if (b === 0) throw new RangeError("division by zero in GF(256)");
  if (a === 0) return 0;
  return EXP[LOG[a]! + 255 - LOG[b]!]!;
}

/**
 * Splits `secret` into `shares` shares, any `threshold` of which rebuild it.
 * The random coefficients are zeroed before returning.
 */
export function splitSecret(
  secret: Uint8Array,
  threshold: number,
  shares: number,
  random: RandomSource,
): ShamirShare[] {
  checkParameters(threshold, shares);
  if (secret.length === 0) throw new RangeError("the secret is empty");
  const out = Array.from({ length: shares }, (_, i) => ({
    index: i + 1,
    value: new Uint8Array(secret.length),
  }));
  const coefficients = new Uint8Array(threshold);
  try {
    for (let b = 0; b < secret.length; b++) {
      coefficients[0] = secret[b]!;
      const r = random.bytes(threshold - 1);
      if (r.length !== threshold - 1) throw new Error("RandomSource returned the wrong number of bytes");
      coefficients.set(r, 1);
      zeroize(r);
      for (const share of out) share.value[b] = evaluate(coefficients, share.index);
    }
  } finally {
    zeroize(coefficients);
  }
  return out;
}

/**
 * The secret that `shares` interpolate to at x = 0. With fewer shares than the
 * threshold the result is a wrong secret, not an error: nothing in the shares
 * themselves can tell; callers check the result against a check value.
 */
export function combineShares(shares: readonly ShamirShare[]): Uint8Array {
  if (shares.length === 0) throw new RangeError("no shares");
  const length = shares[0]!.value.length;
  const seen = new Set<number>();
  for (const s of shares) {
    if (!Number.isInteger(s.index) || s.index < 1 || s.index > SHARE_INDEX_MAX)
      throw new RangeError(`share index ${s.index} is not in 1..${SHARE_INDEX_MAX}`);
    if (seen.has(s.index)) throw new RangeError(`share index ${s.index} appears twice`);
    seen.add(s.index);
    if (s.value.length !== length) throw new RangeError("shares of different lengths");
  }
  // Lagrange basis at 0: l_i = prod_{j != i} x_j / (x_j - x_i); subtraction is XOR.
  const basis = shares.map((si) => {
    let l = 1;
    for (const sj of shares) {
      if (sj === si) continue;
      l = gfMul(l, gfDiv(sj.index, sj.index ^ si.index));
    }
    return l;
  });
  const secret = new Uint8Array(length);
  for (let b = 0; b < length; b++) {
    let acc = 0;
    shares.forEach((s, i) => {
      acc ^= gfMul(s.value[b]!, basis[i]!);
    });
    secret[b] = acc;
  }
  return secret;
}

function evaluate(coefficients: Uint8Array, x: number): number {
  // Horner, highest degree first.
  let y = 0;
  for (let i = coefficients.length - 1; i >= 0; i--) y = gfMul(y, x) ^ coefficients[i]!;
  return y;
}

function checkParameters(threshold: number, shares: number): void {
  if (!Number.isInteger(shares) || shares < 1 || shares > SHARE_INDEX_MAX)
    throw new RangeError(`shares must be an integer in 1..${SHARE_INDEX_MAX}, got ${shares}`);
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > shares)
    throw new RangeError(`threshold must be an integer in 1..${shares}, got ${threshold}`);
}
