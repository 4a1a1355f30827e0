/**
 * The ids of records a replica store may hold, as a Bloom filter: "no" is certain, "maybe" costs a
 * read. Every replicated write merges with the version the replica holds, so each put first reads
 * its key; for a new key (every create, on each of its N replicas) that read finds nothing after
 * searching LevelDB's memtables and every table level. The filter answers those reads from memory.
 *
 * It never forgets: an id is added before its record is written and stays after the record is
 * deleted (a Bloom filter cannot remove), so a stale "maybe" is a read, never a wrong "no". It is
 * rebuilt from the store's keys at every open. Its size is fixed (FILTER_BITS): memory is bounded
 * whatever the store holds; past a few million ids its "maybe" grows common and reads come back,
 * which is only the cost the filter saves, not an error.
 */

import { fnv1a32 } from "../store/fnv1a.js";

/** 2^25 bits = 4 MiB: two probes give about 0.3% false "maybe" at 1 million ids, 20% at 10 million. */
export const FILTER_BITS_LOG2 = 25;

export class RecordIdFilter {
  private readonly words: Uint32Array;
  private readonly mask: number;
  private ids = 0;

  constructor(bitsLog2: number = FILTER_BITS_LOG2) {
    if (!Number.isInteger(bitsLog2) || bitsLog2 < 5 || bitsLog2 > 31)
      throw new RangeError("bitsLog2 must be an integer from 5 to 31");
    this.words = new Uint32Array(2 ** (bitsLog2 - 5));
    this.mask = 2 ** bitsLog2 - 1;
  }

  add(id: string): void {
    const h1 = fnv1a32(id);
    const h2 = mix32(h1);
    this.set(h1 & this.mask);
    this.set(h2 & this.mask);
    this.ids += 1;
  }

  /** False only if `id` was never added. */
  mayHold(id: string): boolean {
    const h1 = fnv1a32(id);
    return this.has(h1 & this.mask) && this.has(mix32(h1) & this.mask);
  }

  /** How many adds it has seen (repeats counted): what its false-"maybe" rate grows with. */
  get added(): number {
    return this.ids;
  }

  private set(bit: number): void {
    this.words[bit >>> 5] |= 1 << (bit & 31);
  }

  private has(bit: number): boolean {
    return (this.words[bit >>> 5]! & (1 << (bit & 31))) !== 0;
  }
}

/** murmur3's finaliser: a second probe position, spread independently of the first's low bits. */
function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
