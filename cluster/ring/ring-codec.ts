/**
 * The ring's bytes, as the control state stores them: a versioned, checksummed, canonical encoding
 * of a RingState. Decoding treats the bytes as hostile: the checksum is checked first (damage is
 * detected, never served), every length is bounded before anything is allocated, every field is
 * range-checked, trailing bytes are refused, and the result must pass every ring invariant. A
 * checksum does not stop a forger, so the strict parse and the validation are what make it safe;
 * the checksum makes accidental damage a clear DECODE error instead of a wrong ring.
 *
 * Layout (big-endian), format 1:
 *   "LBRG" u8 format | u64 version | u8 partPower | u8 replicas | u8 minPartHours
 *   | u64 lastMovesEpochMs | u32 lastGatherStart
 *   | u16 slotCount, then per slot: u8 kind (0 empty, 1 peer, 2 peer marked for removal)
 *       and for a peer: u8 idLen, id (UTF-8) | u8 zoneLen, zone (UTF-8) | f64 weight
 *   | u8 built (0/1), then if built: replicas × partitions u16 slot numbers, replica-major
 *   | partitions × u8 hours since each partition moved
 *   | 32-byte SHA-256 of everything before it
 *
 * Format 2 (written since; format 1 is still read) packs what grows with the partition count, so a
 * ring of power 16 with N = 3 fits a few hundred KiB rather than a megabyte:
 *   ... the same up to the built flag | u8 built, then if built: u8 width (1 when there are at most
 *       255 slots, else 2: one encoding per ring) and replicas × partitions slot numbers of `width`
 *       bytes, replica-major (the all-ones value of the width is NO_SLOT)
 *   | u32 runCount, per run: u32 length (≥ 1), u8 hours — lastPartMoves run-length encoded, adjacent
 *       runs of different hours, lengths summing to the partition count
 *   | 32-byte SHA-256 of everything before it
 */
import { createHash } from "node:crypto";
import { RingError } from "./ring-error.js";
import {
  NO_SLOT,
  PEER_ID_BYTES_MAX,
  SLOTS_MAX,
  U53_MAX,
  validateRingState,
  ZONE_BYTES_MAX,
  type RingSlot,
  type RingState,
} from "./ring-state.js";

/** The format encodeRing writes. */
export const RING_FORMAT = 2;
/** The first format: two bytes per table entry and a byte per partition for its last move. */
const RING_FORMAT_WIDE = 1;
/** At most this many slots use one byte per table entry (0xff stays NO_SLOT). */
const NARROW_SLOTS_MAX = 0xff;
const MAGIC = [0x4c, 0x42, 0x52, 0x47]; // "LBRG"
const CHECKSUM_BYTES = 32;

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function encodeRing(state: RingState): Uint8Array {
  validateRingState(state);
  const partitions = 2 ** state.partPower;
  const names = state.slots.map((s) =>
    s === null ? null : { id: utf8.encode(s.id), zone: utf8.encode(s.zone) },
  );
  const width = state.slots.length <= NARROW_SLOTS_MAX ? 1 : 2;
  const runs = hourRuns(state.lastPartMoves);
  let size = 4 + 1 + 8 + 3 + 8 + 4 + 2;
  for (const n of names) size += n === null ? 1 : 1 + 1 + n.id.length + 1 + n.zone.length + 8;
  size += 1 + (state.table === null ? 0 : 1 + state.replicas * partitions * width);
  size += 4 + runs.length * 5 + CHECKSUM_BYTES;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let o = 0;
  out.set(MAGIC, o);
  o += 4;
  out[o++] = RING_FORMAT;
  o = putU53(view, o, state.version);
  out[o++] = state.partPower;
  out[o++] = state.replicas;
  out[o++] = state.minPartHours;
  o = putU53(view, o, state.lastMovesEpochMs);
  view.setUint32(o, state.lastGatherStart);
  o += 4;
  view.setUint16(o, state.slots.length);
  o += 2;
  state.slots.forEach((slot, i) => {
    const n = names[i];
    if (slot === null || n === null || n === undefined) {
      out[o++] = 0;
      return;
    }
    out[o++] = slot.removing ? 2 : 1;
    out[o++] = n.id.length;
    out.set(n.id, o);
    o += n.id.length;
    out[o++] = n.zone.length;
    out.set(n.zone, o);
    o += n.zone.length;
    view.setFloat64(o, slot.weight);
    o += 8;
  });
  out[o++] = state.table === null ? 0 : 1;
  if (state.table !== null) {
    out[o++] = width;
    for (const row of state.table) {
      for (const s of row) {
        if (width === 1) out[o++] = s === NO_SLOT ? 0xff : s;
        else {
          view.setUint16(o, s);
          o += 2;
        }
      }
    }
  }
  view.setUint32(o, runs.length);
  o += 4;
  for (const [length, hours] of runs) {
    view.setUint32(o, length);
    out[o + 4] = hours;
    o += 5;
  }
  out.set(createHash("sha256").update(out.subarray(0, o)).digest(), o);
  return out;
}

export function decodeRing(bytes: Uint8Array): RingState {
  if (!(bytes instanceof Uint8Array)) throw decodeError("ring bytes must be a Uint8Array");
  if (bytes.length < 4 + 1 + CHECKSUM_BYTES)
    throw decodeError(`${bytes.length} bytes are too short for a ring`);
  const body = bytes.subarray(0, bytes.length - CHECKSUM_BYTES);
  const sum = createHash("sha256").update(body).digest();
  if (!sum.equals(bytes.subarray(bytes.length - CHECKSUM_BYTES))) {
    throw decodeError("checksum mismatch: the ring bytes are damaged");
  }
  const r = new Reader(body);
  for (const m of MAGIC) if (r.u8("magic") !== m) throw decodeError("not a lockbox ring (bad magic)");
  const format = r.u8("format");
  if (format !== RING_FORMAT && format !== RING_FORMAT_WIDE)
    throw decodeError(`unknown ring format ${format}`);
  const version = r.u53("version");
  const partPower = r.u8("partPower");
  const replicas = r.u8("replicas");
  const minPartHours = r.u8("minPartHours");
  const lastMovesEpochMs = r.u53("lastMovesEpochMs");
  const lastGatherStart = r.u32("lastGatherStart");
  const slotCount = r.u16("slotCount");
  if (slotCount > SLOTS_MAX) throw decodeError(`${slotCount} slots exceed ${SLOTS_MAX}`);
  const slots: (RingSlot | null)[] = [];
  for (let i = 0; i < slotCount; i++) {
    const kind = r.u8(`slot ${i}.kind`);
    if (kind === 0) {
      slots.push(null);
      continue;
    }
    if (kind > 2) throw decodeError(`slot ${i} has unknown kind ${kind}`);
    const id = r.text(`slot ${i}.id`, PEER_ID_BYTES_MAX);
    const zone = r.text(`slot ${i}.zone`, ZONE_BYTES_MAX);
    const weight = r.f64(`slot ${i}.weight`);
    slots.push({ id, zone, weight, removing: kind === 2 });
  }
  // Validated shape before any allocation sized by it (a hostile partPower cannot ask for gigabytes
  // without sending them: the reader checks the remaining length first).
  const built = r.u8("built");
  if (built > 1) throw decodeError(`built flag must be 0 or 1, got ${built}`);
  if (partPower > 24) throw decodeError(`partPower ${partPower} exceeds 24`);
  const partitions = 2 ** partPower;
  let table: Uint16Array[] | null = null;
  if (built === 1) {
    const width = format === RING_FORMAT_WIDE ? 2 : r.u8("table width");
    if (format === RING_FORMAT && width !== (slotCount <= NARROW_SLOTS_MAX ? 1 : 2))
      throw decodeError(`table width ${width} is not the one for ${slotCount} slots`);
    r.need(replicas * partitions * width, "table");
    table = [];
    for (let q = 0; q < replicas; q++) {
      const row = new Uint16Array(partitions);
      for (let p = 0; p < partitions; p++) {
        if (width === 2) row[p] = r.u16("table");
        else {
          const v = r.u8("table");
          row[p] = v === 0xff ? NO_SLOT : v;
        }
      }
      table.push(row);
    }
  }
  const lastPartMoves =
    format === RING_FORMAT_WIDE ? r.bytes(partitions, "lastPartMoves") : readHourRuns(r, partitions);
  if (r.remaining !== 0) throw decodeError(`${r.remaining} trailing bytes after the ring`);
  const state: RingState = {
    version,
    partPower,
    replicas,
    minPartHours,
    slots,
    table,
    lastPartMoves,
    lastMovesEpochMs,
    lastGatherStart,
  };
  try {
    validateRingState(state);
  } catch (e) {
    if (e instanceof RingError) throw decodeError(`decoded ring is invalid: ${e.message}`);
    throw e;
  }
  return state;
}

/** lastPartMoves as runs of [length, hours], adjacent runs of different hours. */
function hourRuns(hours: Uint8Array): [number, number][] {
  const runs: [number, number][] = [];
  for (const h of hours) {
    const last = runs[runs.length - 1];
    if (last !== undefined && last[1] === h) last[0] += 1;
    else runs.push([1, h]);
  }
  return runs;
}

function readHourRuns(r: Reader, partitions: number): Uint8Array {
  const count = r.u32("lastPartMoves run count");
  if (count > partitions) throw decodeError(`${count} runs for ${partitions} partitions`);
  r.need(count * 5, "lastPartMoves runs");
  const out = new Uint8Array(partitions);
  let at = 0;
  let previous = -1;
  for (let i = 0; i < count; i++) {
    const length = r.u32(`lastPartMoves run ${i} length`);
    const hours = r.u8(`lastPartMoves run ${i} hours`);
    if (length < 1 || length > partitions - at)
      throw decodeError(`lastPartMoves run ${i} of ${length} does not fit ${partitions} partitions`);
    if (hours === previous) throw decodeError(`lastPartMoves runs ${i - 1} and ${i} are not merged`);
    out.fill(hours, at, at + length);
    at += length;
    previous = hours;
  }
  if (at !== partitions) throw decodeError(`lastPartMoves runs cover ${at} of ${partitions} partitions`);
  return out;
}

function putU53(view: DataView, o: number, n: number): number {
  view.setUint32(o, Math.floor(n / 2 ** 32));
  view.setUint32(o + 4, n >>> 0);
  return o + 8;
}

function decodeError(message: string): RingError {
  return new RingError("DECODE", message);
}

/** A bounds-checked big-endian cursor (after tpm/marshal/reader.ts): no read passes the end. */
class Reader {
  private o = 0;
  private readonly view: DataView;

  constructor(private readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get remaining(): number {
    return this.buf.length - this.o;
  }

  need(count: number, what: string): void {
    if (count > this.remaining) throw decodeError(`${what}: needs ${count} bytes, ${this.remaining} left`);
  }

  u8(what: string): number {
    this.need(1, what);
    return this.buf[this.o++]!;
  }

  u16(what: string): number {
    this.need(2, what);
    const v = this.view.getUint16(this.o);
    this.o += 2;
    return v;
  }

  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.o);
    this.o += 4;
    return v;
  }

  u53(what: string): number {
    const high = this.u32(what);
    const low = this.u32(what);
    const v = high * 2 ** 32 + low;
    if (v > U53_MAX) throw decodeError(`${what} ${v} exceeds 2^53 - 1`);
    return v;
  }

  f64(what: string): number {
    this.need(8, what);
    const v = this.view.getFloat64(this.o);
    this.o += 8;
    return v;
  }

  bytes(count: number, what: string): Uint8Array {
    this.need(count, what);
    const out = this.buf.slice(this.o, this.o + count);
    this.o += count;
    return out;
  }

  text(what: string, maxBytes: number): string {
    const length = this.u8(`${what}.length`);
    if (length > maxBytes) throw decodeError(`${what} is ${length} bytes, more than ${maxBytes}`);
    try {
      return utf8Strict.decode(this.bytes(length, what));
    } catch {
      throw decodeError(`${what} is not valid UTF-8`);
    }
  }
}
