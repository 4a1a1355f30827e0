import test from "ava";
import fc from "fast-check";
import { RecordIdFilter } from "../../src/replication/record-id-filter.js";

test("an id added is always held: no false 'no', also in a small filter full of other ids", (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.string({ maxLength: 60 }), { maxLength: 300 }),
      fc.integer({ min: 5, max: 12 }),
      (ids, bitsLog2) => {
        const filter = new RecordIdFilter(bitsLog2);
        for (const id of ids) filter.add(id);
        return ids.every((id) => filter.mayHold(id)) && filter.added === ids.length;
      },
    ),
  );
  t.pass();
});

test("ids never added are mostly told no: false 'maybe' near the Bloom bound at 1,000 ids in 2^16 bits", (t) => {
  const filter = new RecordIdFilter(16);
  for (let i = 0; i < 1000; i++) filter.add(`0190a3b2-7c1d-8e4f-9a0b-${i.toString(16).padStart(12, "0")}`);
  let maybe = 0;
  const probes = 20_000;
  for (let i = 0; i < probes; i++) {
    if (filter.mayHold(`0190a3b2-7c1d-8e4f-9a0b-${(i + 1_000_000).toString(16).padStart(12, "0")}`)) maybe++;
  }
  // Two probes, n = 1000, m = 65536: (1 - e^(-2n/m))^2 = 0.09%; a filter probing one bit, or
  // whose probes share their low bits, would sit near 1.5-3%.
  t.true(maybe / probes < 0.005, `false maybe rate ${maybe / probes}`);
  t.true(new RecordIdFilter(16).mayHold("x") === false, "an empty filter holds nothing");
});

test("a filter's size is bounded: bitsLog2 outside 5..31 is refused", (t) => {
  t.throws(() => new RecordIdFilter(4), { instanceOf: RangeError });
  t.throws(() => new RecordIdFilter(32), { instanceOf: RangeError });
  t.throws(() => new RecordIdFilter(10.5), { instanceOf: RangeError });
});
