import test from "ava";
import fc from "fast-check";
import { isLockboxError } from "../../src/errors.js";
import {
  algorithmFromWire,
  timestampFromWire,
  timestampToWire,
  uint32FromWire,
} from "../../src/server/wire-mapping.js";

/** `fn` either returns or throws INVALID_ARGUMENT naming `field`; nothing else. */
function cleanOutcome(field: string, fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (err) {
    return isLockboxError(err, "INVALID_ARGUMENT") && err.field === field;
  }
}

test("timestamps round-trip at millisecond precision", (t) => {
  fc.assert(
    fc.property(fc.date({ min: new Date(-8.64e15), max: new Date(8.64e15), noInvalidDate: true }), (d) => {
      const wire = timestampToWire(d);
      return (
        timestampFromWire("expires_at", { seconds: String(wire.seconds), nanos: wire.nanos! }).getTime() ===
        d.getTime()
      );
    }),
    { numRuns: 500 },
  );
  t.pass();
});

test("any timestamp from the wire is a Date or INVALID_ARGUMENT naming the field", (t) => {
  const seconds = fc.oneof(
    fc.bigInt().map(String),
    fc.string(),
    fc.double().map(String),
    fc.constant("1e400"),
  );
  const nanos = fc.oneof(fc.integer(), fc.double(), fc.constant(NaN));
  fc.assert(
    fc.property(fc.option(fc.record({ seconds, nanos })), (ts) => {
      let date: Date | undefined;
      const ok = cleanOutcome("expires_at", () => (date = timestampFromWire("expires_at", ts)));
      return ok && (date === undefined || !Number.isNaN(date.getTime()));
    }),
    { numRuns: 1000 },
  );
  t.pass();
});

test("any enum or integer value from the wire is accepted or refused naming the field", (t) => {
  fc.assert(
    fc.property(fc.anything(), (v) => {
      const algorithm = cleanOutcome("algorithm", () => algorithmFromWire(v));
      const bits = cleanOutcome("bit_length", () => uint32FromWire("bit_length", v));
      return algorithm && bits;
    }),
    { numRuns: 1000 },
  );
  t.is(algorithmFromWire("KEY_ALGORITHM_AES"), "AES");
  t.throws(() => algorithmFromWire(7), { message: /algorithm: unknown value 7/ });
});
