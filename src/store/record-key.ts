/**
 * Keys of the "records" sublevel: `<partition as zero-padded lowercase hex>/<key id>`. The fixed
 * width (4 hex digits up to partition power 16, more above) keeps a partition's records contiguous
 * and partitions in numeric order, so one partition scans as one range.
 */
export function partitionHexWidth(partitionPower: number): number {
  return Math.max(4, Math.ceil(partitionPower / 4));
}

export function recordKey(partition: number, keyId: string, partitionPower: number): string {
  if (!Number.isInteger(partition) || partition < 0 || partition >= 2 ** partitionPower) {
    throw new RangeError(`partition ${partition} out of range for power ${partitionPower}`);
  }
  return `${partition.toString(16).padStart(partitionHexWidth(partitionPower), "0")}/${keyId}`;
}

/** The key range [gte, lt) holding every record of one partition. */
export function partitionRange(partition: number, partitionPower: number): { gte: string; lt: string } {
  const prefix = `${partition.toString(16).padStart(partitionHexWidth(partitionPower), "0")}/`;
  return { gte: prefix, lt: `${prefix.slice(0, -1)}0` }; // "0" is the character after "/"
}
