import { createHash } from "node:crypto";
import test from "ava";
import fc from "fast-check";
import { RingBuilder } from "../../cluster/ring/ring-builder.js";
import { decodeRing, encodeRing } from "../../cluster/ring/ring-codec.js";
import { RingError } from "../../cluster/ring/ring-error.js";
import { validateRingState, type RingState } from "../../cluster/ring/ring-state.js";

const HOUR_MS = 3_600_000;

/** A ring after a random history of adds, weight changes, removals and rebalances (small powers: fast). */
const ringHistory = fc
  .record({
    partPower: fc.integer({ min: 0, max: 6 }),
    replicas: fc.integer({ min: 1, max: 3 }),
    minPartHours: fc.integer({ min: 0, max: 3 }),
    peers: fc.array(
      fc.record({
        zone: fc.constantFrom("a", "b", "c", "zone-ü"),
        weight: fc.constantFrom(0, 1, 2.5, 100, 1e9),
      }),
      { minLength: 3, maxLength: 8 },
    ),
    steps: fc.array(
      fc.oneof(
        fc.record({ op: fc.constant("rebalance" as const), hours: fc.integer({ min: 0, max: 5 }) }),
        fc.record({ op: fc.constant("remove" as const), peer: fc.nat() }),
        fc.record({ op: fc.constant("weight" as const), peer: fc.nat(), weight: fc.constantFrom(0, 1, 50) }),
      ),
      { maxLength: 6 },
    ),
  })
  .map((h): RingState => {
    const b = RingBuilder.create(h);
    h.peers.forEach((p, i) => b.addPeer({ id: `peer-${i}`, zone: p.zone, weight: p.weight }));
    let now = 1_000 * HOUR_MS;
    for (const step of h.steps) {
      const peers = b.peers();
      try {
        if (step.op !== "rebalance" && peers.length === 0) continue;
        if (step.op === "rebalance") b.rebalance((now += step.hours * HOUR_MS));
        else if (step.op === "remove") b.removePeer(peers[step.peer % peers.length]!.id);
        else b.setWeight(peers[step.peer % peers.length]!.id, step.weight);
      } catch (e) {
        // Too few weighted peers is a legitimate refusal; anything else is a bug.
        if (!(e instanceof RingError && e.code === "TOO_FEW_PEERS")) throw e;
      }
      b.validate();
    }
    return b.toState();
  });

function withChecksum(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(body.length + 32);
  out.set(body);
  out.set(createHash("sha256").update(body).digest(), body.length);
  return out;
}

const decodeCode = (bytes: Uint8Array): string | undefined => {
  try {
    decodeRing(bytes);
    return undefined;
  } catch (e) {
    if (e instanceof RingError) return e.code;
    throw e;
  }
};

test("a ring round-trips byte for byte and state for state", (t) => {
  fc.assert(
    fc.property(ringHistory, (state) => {
      const bytes = encodeRing(state);
      const back = decodeRing(bytes);
      t.deepEqual(back, state);
      t.deepEqual(encodeRing(back), bytes);
      const builder = RingBuilder.fromState(back);
      builder.validate();
      if (state.table !== null)
        t.deepEqual(builder.ring().primaries(0), RingBuilder.fromState(state).ring().primaries(0));
    }),
    { numRuns: 60 },
  );
});

test("a built ring at partition power 10 round-trips", (t) => {
  const b = RingBuilder.create({ partPower: 10, replicas: 3, minPartHours: 1 });
  for (let i = 0; i < 5; i++) b.addPeer({ id: `peer-${i}`, zone: `z${i % 3}`, weight: 10 + i });
  b.rebalance(5 * HOUR_MS);
  b.removePeer("peer-1");
  const state = b.toState();
  const bytes = encodeRing(state);
  t.deepEqual(decodeRing(bytes), state);
});

test("any flipped bit is refused as damage (checksum)", (t) => {
  fc.assert(
    fc.property(ringHistory, fc.nat(), fc.integer({ min: 0, max: 7 }), (state, at, bit) => {
      const bytes = encodeRing(state);
      const damaged = new Uint8Array(bytes);
      damaged[at % bytes.length]! ^= 1 << bit;
      const err = t.throws(() => decodeRing(damaged), { instanceOf: RingError });
      t.is(err?.code, "DECODE");
    }),
    { numRuns: 60 },
  );
});

test("truncated or extended bytes are refused", (t) => {
  fc.assert(
    fc.property(ringHistory, fc.nat(), (state, cut) => {
      const bytes = encodeRing(state);
      t.is(decodeCode(bytes.subarray(0, cut % bytes.length)), "DECODE");
      const longer = new Uint8Array(bytes.length + 1);
      longer.set(bytes);
      t.is(decodeCode(longer), "DECODE");
      // Even with a checksum recomputed over them (a forger, not damage), trailing bytes are refused.
      const body = bytes.subarray(0, bytes.length - 32);
      t.is(decodeCode(withChecksum(new Uint8Array([...body, 0]))), "DECODE");
      t.is(decodeCode(withChecksum(body.subarray(0, Math.max(0, body.length - 1 - (cut % 8))))), "DECODE");
    }),
    { numRuns: 40 },
  );
});

test("hostile bytes with a valid checksum decode to a valid ring that re-encodes exactly and rebalances soundly, or are refused with DECODE", (t) => {
  fc.assert(
    fc.property(
      ringHistory,
      fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), {
        minLength: 1,
        maxLength: 4,
      }),
      (state, edits) => {
        const body = new Uint8Array(encodeRing(state).subarray(0, -32));
        for (const e of edits) body[e.at % body.length] = e.value;
        const forged = withChecksum(body);
        let decoded: RingState;
        try {
          decoded = decodeRing(forged);
        } catch (e) {
          t.true(e instanceof RingError && e.code === "DECODE", String(e));
          return;
        }
        validateRingState(decoded);
        t.deepEqual(encodeRing(decoded), forged);
        // Whatever a valid-looking forged ring holds, rebuilding from it keeps every invariant.
        const b = RingBuilder.fromState(decoded);
        try {
          b.rebalance(decoded.lastMovesEpochMs + HOUR_MS);
        } catch (e) {
          t.true(e instanceof RingError && e.code === "TOO_FEW_PEERS", String(e));
        }
        b.validate();
      },
    ),
    { numRuns: 300 },
  );
});

test("random bytes, with or without a checksum, are refused with DECODE", (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (junk) => {
      t.is(decodeCode(junk), "DECODE");
      t.is(decodeCode(withChecksum(junk)), "DECODE");
    }),
    { numRuns: 300 },
  );
});

test("a forged header cannot make the decoder allocate what the bytes do not carry", (t) => {
  // partPower 24, 15 replicas, "built": a table of 480 MiB announced in a few dozen bytes.
  const body = new Uint8Array([
    ...[0x4c, 0x42, 0x52, 0x47, 1], // magic, format
    ...[0, 0, 0, 0, 0, 0, 0, 1], // version
    ...[24, 15, 0], // partPower, replicas, minPartHours
    ...new Array<number>(8 + 4 + 2).fill(0), // lastMovesEpochMs, lastGatherStart, no slots
    1, // built
  ]);
  const err = t.throws(() => decodeRing(withChecksum(body)), { instanceOf: RingError });
  t.is(err?.code, "DECODE");
  t.regex(err!.message, /table: needs/);
});

test("an unknown format or magic is refused by name", (t) => {
  const b = RingBuilder.create({ partPower: 2, replicas: 1, minPartHours: 0 });
  b.addPeer({ id: "p", zone: "z", weight: 1 });
  b.rebalance(0);
  const body = new Uint8Array(encodeRing(b.toState()).subarray(0, -32));
  body[4] = 3;
  t.regex(t.throws(() => decodeRing(withChecksum(body)))!.message, /unknown ring format 3/);
  body[4] = 2;
  body[0] = 0x58;
  t.regex(t.throws(() => decodeRing(withChecksum(body)))!.message, /bad magic/);
});

/** The first format's bytes of `state` (two bytes per table entry, a byte per partition's last move). */
function encodeFormat1(state: RingState): Uint8Array {
  const v2 = encodeRing(state).subarray(0, -32);
  const partitions = 2 ** state.partPower;
  // Everything up to and including the built flag is the same in both formats.
  const headerBytes =
    v2.length -
    (state.table === null ? 0 : 1 + state.replicas * partitions * (state.slots.length <= 255 ? 1 : 2)) -
    (4 + 5 * runCount(state.lastPartMoves));
  const header = new Uint8Array(v2.subarray(0, headerBytes));
  header[4] = 1;
  const table = new Uint8Array(state.table === null ? 0 : state.replicas * partitions * 2);
  const view = new DataView(table.buffer);
  state.table?.forEach((row, q) => row.forEach((s, p) => view.setUint16((q * partitions + p) * 2, s)));
  const body = new Uint8Array([...header, ...table, ...state.lastPartMoves]);
  return withChecksum(body);
}

function runCount(hours: Uint8Array): number {
  let n = 0;
  hours.forEach((h, i) => {
    if (i === 0 || hours[i - 1] !== h) n += 1;
  });
  return n;
}

test("a ring stored in the first format (before packing) still decodes to the same state", (t) => {
  fc.assert(
    fc.property(ringHistory, (state) => {
      t.deepEqual(decodeRing(encodeFormat1(state)), state);
    }),
    { numRuns: 60 },
  );
});

test("partition power 16 with N = 3 packs into a few hundred KiB (one byte per table entry, hours run-length encoded)", (t) => {
  const b = RingBuilder.create({ partPower: 16, replicas: 3, minPartHours: 1 });
  for (let i = 0; i < 5; i++) b.addPeer({ id: `peer-${i}`, zone: `z${i % 3}`, weight: 1 });
  b.rebalance(0);
  const bytes = encodeRing(b.toState());
  t.true(bytes.length < 3 * 65_536 + 4_096, `${bytes.length} bytes`);
  const back = decodeRing(bytes);
  t.deepEqual(back, b.toState());
  t.deepEqual(encodeRing(back), bytes);
});

test("packed parts that are not the one encoding are refused: table width, unmerged or short runs", (t) => {
  const b = RingBuilder.create({ partPower: 3, replicas: 2, minPartHours: 1 });
  b.addPeer({ id: "p", zone: "z", weight: 1 });
  b.addPeer({ id: "q", zone: "y", weight: 1 });
  b.rebalance(0);
  const state = b.toState();
  const body = new Uint8Array(encodeRing(state).subarray(0, -32));
  const tableAt = body.length - (4 + 5 * runCount(state.lastPartMoves)) - 2 * 8 - 1;
  t.is(body[tableAt], 1, "one byte per entry for two slots");
  const wide = new Uint8Array(body);
  wide[tableAt] = 2;
  t.regex(t.throws(() => decodeRing(withChecksum(wide)))!.message, /table width 2/);
  // One run of all 8 partitions split into two runs of the same hours.
  t.is(runCount(state.lastPartMoves), 1);
  const runsAt = body.length - 9;
  const split = new Uint8Array([
    ...body.subarray(0, runsAt),
    0,
    0,
    0,
    2,
    0,
    0,
    0,
    4,
    body[body.length - 1]!,
    0,
    0,
    0,
    4,
    body[body.length - 1]!,
  ]);
  t.regex(t.throws(() => decodeRing(withChecksum(split)))!.message, /not merged/);
  const short = new Uint8Array(body);
  short[body.length - 2] = 7; // one run of 7 for 8 partitions
  t.regex(t.throws(() => decodeRing(withChecksum(short)))!.message, /cover 7 of 8/);
});
