/**
 * Child process for durability.test.ts: opens the store in argv[2], writes a burst of concurrent
 * writes, prints each key as soon as its write is acknowledged, then keeps writing until killed.
 */
import { openPeerStore } from "../../src/store/peer-store.js";

const dir = process.argv[2];
if (dir === undefined) throw new Error("usage: write-burst-child DIR");
const store = await openPeerStore(dir);
const burstMax = 100_000; // bounded even if the parent never kills us
let next = 0;
const writer = async (): Promise<void> => {
  while (next < burstMax) {
    const key = `k${String(next++).padStart(6, "0")}`;
    await store.write([{ type: "put", sublevel: "records", key, value: new Uint8Array(Buffer.from(key)) }]);
    process.stdout.write(`${key}\n`);
  }
};
await Promise.all(Array.from({ length: 32 }, writer));
await store.close();
