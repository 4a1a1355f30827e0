/**
 * The whole state of a ring, as the builder keeps it and the codec stores it in the control state:
 * enough for any peer to look partitions up and for any leader to rebalance it again. Plain data;
 * `validateRingState` checks every invariant, so a state built by a bug or decoded from lying bytes
 * is refused before anyone uses it.
 */
import { PARTITION_POWER_MAX } from "./partition.js";
import { RingError } from "./ring-error.js";

/** A peer on the ring: the ring's device. */
export interface RingPeer {
  /** Peer id (the member id of the control state). */
  id: string;
  /** Failure domain: replicas of one partition go to distinct zones first. */
  zone: string;
  /** Relative capacity; 0 drains the peer (it gives its partitions away, minPartHours permitting). */
  weight: number;
}

export interface RingSlot extends RingPeer {
  /** Marked by removePeer: the next rebalance takes all its partitions at once and frees the slot. */
  removing: boolean;
}

export interface RingState {
  /** Bumped by every change; the control state orders ring versions by it. */
  version: number;
  partPower: number;
  replicas: number;
  /** A partition that moved is not moved again for this many hours (removed peers excepted). */
  minPartHours: number;
  /** Peers by slot; a removed peer leaves an empty slot (null) so the table's slot numbers stay put. */
  slots: (RingSlot | null)[];
  /** replica → partition → slot, or null before the first rebalance. */
  table: Uint16Array[] | null;
  /** Hours since each partition last moved, saturating at LAST_MOVE_HOURS_MAX. */
  lastPartMoves: Uint8Array;
  /** When lastPartMoves was last brought up to date (injected time, ms since the epoch). */
  lastMovesEpochMs: number;
  /** Where the last balance gather began; the next one starts elsewhere so no region is always first. */
  lastGatherStart: number;
}

export const REPLICAS_MAX = 15;
/** Slot numbers fit 16 bits; this value marks "no peer" inside the builder while it reassigns. */
export const NO_SLOT = 0xffff;
export const SLOTS_MAX = 0xfffe;
export const PEER_ID_BYTES_MAX = 128;
export const ZONE_BYTES_MAX = 64;
export const WEIGHT_MAX = 1e9;
/**
 * The smallest positive weight. Weights are relative; a vanishing one (a subnormal double) would
 * underflow to zero replicanths in the plan's arithmetic, so it is refused rather than planned around.
 */
export const WEIGHT_MIN = 1e-3;
export const LAST_MOVE_HOURS_MAX = 0xff;
/** A partition can always move again once LAST_MOVE_HOURS_MAX hours pass. */
export const MIN_PART_HOURS_MAX = LAST_MOVE_HOURS_MAX;
/** Version numbers and times stay exact doubles. */
export const U53_MAX = Number.MAX_SAFE_INTEGER;

const utf8 = new TextEncoder();
/** UTF-8 cannot carry a lone surrogate; refusing it keeps encode(decode(x)) exact. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** Names end up in `lockbox ring show` and logs: no control characters (no terminal escapes). */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

export function checkPeer(peer: RingPeer, what: string): void {
  if (typeof peer !== "object" || peer === null) throw invalidArg(`${what} must be an object`);
  checkName(peer.id, PEER_ID_BYTES_MAX, `${what}.id`);
  checkName(peer.zone, ZONE_BYTES_MAX, `${what}.zone`);
  checkWeight(peer.weight, `${what}.weight`);
}

export function checkName(value: unknown, maxBytes: number, what: string): void {
  if (typeof value !== "string" || value.length === 0) throw invalidArg(`${what} must be a non-empty string`);
  if (utf8.encode(value).length > maxBytes) throw invalidArg(`${what} is longer than ${maxBytes} bytes`);
  if (LONE_SURROGATE.test(value)) throw invalidArg(`${what} is not well-formed Unicode`);
  if (CONTROL.test(value)) throw invalidArg(`${what} contains a control character`);
}

export function checkWeight(weight: unknown, what: string): void {
  if (
    typeof weight !== "number" ||
    !Number.isFinite(weight) ||
    Object.is(weight, -0) ||
    (weight !== 0 && (weight < WEIGHT_MIN || weight > WEIGHT_MAX))
  ) {
    throw invalidArg(`${what} must be 0 or a number in ${WEIGHT_MIN}..${WEIGHT_MAX}, got ${String(weight)}`);
  }
}

export function checkShape(partPower: number, replicas: number, minPartHours: number): void {
  if (!Number.isInteger(partPower) || partPower < 0 || partPower > PARTITION_POWER_MAX) {
    throw invalidArg(`partPower must be an integer in 0..${PARTITION_POWER_MAX}, got ${partPower}`);
  }
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > REPLICAS_MAX) {
    throw invalidArg(`replicas must be an integer in 1..${REPLICAS_MAX}, got ${replicas}`);
  }
  if (!Number.isInteger(minPartHours) || minPartHours < 0 || minPartHours > MIN_PART_HOURS_MAX) {
    throw invalidArg(`minPartHours must be an integer in 0..${MIN_PART_HOURS_MAX}, got ${minPartHours}`);
  }
}

/**
 * Every invariant of a ring state. Throws INVALID_RING naming the first broken one. With
 * `settled`, the state must also be what a rebalance leaves: built, and no peer marked for removal.
 */
export function validateRingState(state: RingState, settled = false): void {
  const bad = (message: string): never => {
    throw new RingError("INVALID_RING", message);
  };
  try {
    checkShape(state.partPower, state.replicas, state.minPartHours);
  } catch (e) {
    bad((e as Error).message);
  }
  const partitions = 2 ** state.partPower;
  if (!isU53(state.version)) bad(`version ${state.version} is not an integer in 0..2^53`);
  if (!isU53(state.lastMovesEpochMs))
    bad(`lastMovesEpochMs ${state.lastMovesEpochMs} is not an integer in 0..2^53`);
  if (
    !Number.isInteger(state.lastGatherStart) ||
    state.lastGatherStart < 0 ||
    state.lastGatherStart >= partitions
  ) {
    bad(`lastGatherStart ${state.lastGatherStart} is outside 0..${partitions - 1}`);
  }
  if (state.slots.length > SLOTS_MAX) bad(`${state.slots.length} slots exceed ${SLOTS_MAX}`);
  if (state.slots.length > 0 && state.slots[state.slots.length - 1] === null)
    bad("the slot list ends in an empty slot");
  const ids = new Set<string>();
  state.slots.forEach((slot, i) => {
    if (slot === null) return;
    try {
      checkPeer(slot, `slot ${i}`);
    } catch (e) {
      bad((e as Error).message);
    }
    if (typeof slot.removing !== "boolean") bad(`slot ${i}.removing is not a boolean`);
    if (ids.has(slot.id)) bad(`peer ${slot.id} holds two slots`);
    ids.add(slot.id);
  });
  if (!(state.lastPartMoves instanceof Uint8Array) || state.lastPartMoves.length !== partitions) {
    bad(`lastPartMoves must hold ${partitions} bytes`);
  }
  if (state.table === null) {
    if (settled) bad("the ring was never rebalanced");
    return;
  }
  if (state.table.length !== state.replicas)
    bad(`table has ${state.table.length} replica rows, not ${state.replicas}`);
  for (const [r, row] of state.table.entries()) {
    if (!(row instanceof Uint16Array) || row.length !== partitions)
      bad(`replica row ${r} must hold ${partitions} slots`);
  }
  const held = new Array<number>(state.replicas);
  for (let part = 0; part < partitions; part++) {
    for (let r = 0; r < state.replicas; r++) {
      const s = state.table[r]![part]!;
      const slot = s < state.slots.length ? state.slots[s] : null;
      if (slot === null || slot === undefined)
        bad(`partition ${part} replica ${r} is on slot ${s}, which holds no peer`);
      if (settled && slot!.removing)
        bad(`partition ${part} replica ${r} is still on removed peer ${slot!.id}`);
      for (let q = 0; q < r; q++) {
        if (held[q] === s) bad(`partition ${part} has two replicas on peer ${slot!.id}`);
      }
      held[r] = s;
    }
  }
  if (settled && state.slots.some((s) => s !== null && s.removing))
    bad("a peer marked for removal is still on the ring");
}

const isU53 = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= U53_MAX;

function invalidArg(message: string): RingError {
  return new RingError("INVALID_ARGUMENT", message);
}

/** A deep copy, so a builder never shares arrays with what it was given or what it hands out. */
export function copyRingState(state: RingState): RingState {
  return {
    ...state,
    slots: state.slots.map((s) => (s === null ? null : { ...s })),
    table: state.table === null ? null : state.table.map((row) => new Uint16Array(row)),
    lastPartMoves: new Uint8Array(state.lastPartMoves),
  };
}
