/**
 * FNV-1a over a string's UTF-16 code units: a spread hash, not a secret one. The in-memory filters of
 * what a store holds (client-requests.ts, record-id-filter.ts) key on it, where a collision only costs
 * a read.
 */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
