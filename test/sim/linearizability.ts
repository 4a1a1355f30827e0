/**
 * A linearizability checker in the style of Wing & Gong / Lowe, as done by Porcupine: depth-first search
 * over the order in which completed and pending operations take effect, with a cache of
 * (set of linearized operations, model state) pairs already explored. Histories are partitioned per key
 * (a key-value store is linearizable iff each key's register history is). The search is bounded: past
 * `stepsMax` it answers "unknown" instead of running forever.
 */

export interface RegisterOp {
  kind: "write" | "read";
  key: string;
  /** write: the (unique) value written. read: the value observed (null: never written). */
  value: string | null;
  /** Logical time of invocation and response; response Infinity: outcome unknown (e.g. a write whose ack was lost). */
  invokedAt: number;
  respondedAt: number;
}

export type LinearizabilityResult =
  | { outcome: "ok" }
  | { outcome: "violation"; key: string; ops: RegisterOp[] }
  | { outcome: "unknown"; key: string };

export function checkRegisterHistory(ops: readonly RegisterOp[], stepsMax = 200_000): LinearizabilityResult {
  const byKey = new Map<string, RegisterOp[]>();
  for (const op of ops) {
    if (!(op.invokedAt < op.respondedAt))
      throw new RangeError(`op responds before it is invoked: ${JSON.stringify(op)}`);
    const list = byKey.get(op.key) ?? [];
    list.push(op);
    byKey.set(op.key, list);
  }
  for (const key of [...byKey.keys()].sort()) {
    const r = checkOneRegister(byKey.get(key)!, stepsMax);
    if (r === "violation") return { outcome: "violation", key, ops: byKey.get(key)! };
    if (r === "unknown") return { outcome: "unknown", key };
  }
  return { outcome: "ok" };
}

interface Node {
  op: number;
  isCall: boolean;
  time: number;
  /** For a call: its matching return node. */
  match: Node | null;
  prev: Node | null;
  next: Node | null;
}

function checkOneRegister(ops: readonly RegisterOp[], stepsMax: number): "ok" | "violation" | "unknown" {
  // Events sorted by time; at equal times calls come after returns (an op that returned at t
  // precedes one invoked at t).
  const events: Node[] = [];
  ops.forEach((op, i) => {
    const call: Node = { op: i, isCall: true, time: op.invokedAt, match: null, prev: null, next: null };
    const ret: Node = { op: i, isCall: false, time: op.respondedAt, match: null, prev: null, next: null };
    call.match = ret;
    events.push(call, ret);
  });
  events.sort((a, b) => a.time - b.time || Number(a.isCall) - Number(b.isCall) || a.op - b.op);
  const head: Node = { op: -1, isCall: false, time: -Infinity, match: null, prev: null, next: null };
  let prev = head;
  for (const e of events) {
    prev.next = e;
    e.prev = prev;
    prev = e;
  }

  const lift = (call: Node): void => {
    call.prev!.next = call.next;
    if (call.next) call.next.prev = call.prev;
    const ret = call.match!;
    ret.prev!.next = ret.next;
    if (ret.next) ret.next.prev = ret.prev;
  };
  const unlift = (call: Node): void => {
    const ret = call.match!;
    ret.prev!.next = ret;
    if (ret.next) ret.next.prev = ret;
    call.prev!.next = call;
    if (call.next) call.next.prev = call;
  };

  const linearized = new Uint8Array(ops.length);
  // Cache of explored (linearized set, state) pairs, keyed by a Zobrist hash of the set and verified
  // exactly on a hash hit (so a collision can never prune a branch that was not explored).
  const zobrist = Array.from({ length: ops.length }, (_, i) => [mix(i * 2 + 1), mix(i * 2 + 2)] as const);
  let z1 = 0;
  let z2 = 0;
  const seen = new Map<string, Uint8Array[]>();
  const visit = (key: string): boolean => {
    const list = seen.get(key);
    if (list === undefined) {
      seen.set(key, [linearized.slice()]);
      return true;
    }
    if (list.some((bits) => bits.every((b, i) => b === linearized[i]))) return false;
    list.push(linearized.slice());
    return true;
  };
  // `forced`: a read linearized greedily. A read that is callable now (no unlinearized op returned
  // before it was invoked) and matches the current state can always go first — it changes no state and
  // only drops a constraint — so if that branch fails, trying other ops in its place cannot succeed.
  const stack: { call: Node; state: string | null; forced: boolean }[] = [];
  let state: string | null = null;
  let entry = head.next;
  let steps = 0;
  /** Undo the latest choice (and any forced reads above it); false when nothing is left to try. */
  const backtrack = (): boolean => {
    for (;;) {
      const top = stack.pop();
      if (top === undefined) return false;
      state = top.state;
      linearized[top.call.op] = 0;
      z1 ^= zobrist[top.call.op]![0];
      z2 ^= zobrist[top.call.op]![1];
      unlift(top.call);
      if (!top.forced) {
        entry = top.call.next;
        return true;
      }
    }
  };
  while (head.next !== null) {
    if (++steps > stepsMax) return "unknown";
    if (entry === null) return "violation"; // cannot happen: a return node always ends the list
    if (entry.isCall) {
      const op = ops[entry.op]!;
      const ok = op.kind === "write" || op.value === state;
      const nextState: string | null = op.kind === "write" ? op.value : state;
      if (ok) {
        linearized[entry.op] = 1;
        const [a, b] = zobrist[entry.op]!;
        const key = `${(z1 ^ a) >>> 0}.${(z2 ^ b) >>> 0}|${nextState ?? "\u0000"}`;
        if (visit(key)) {
          z1 ^= a;
          z2 ^= b;
          stack.push({ call: entry, state, forced: op.kind === "read" });
          state = nextState;
          lift(entry);
          entry = head.next;
          continue;
        }
        linearized[entry.op] = 0;
        if (op.kind === "read" && !backtrack()) return "violation";
        if (op.kind === "read") continue;
      }
      entry = entry.next;
    } else if (!backtrack()) {
      // A return whose call cannot be linearized before it, with no choice left to undo.
      return "violation";
    }
  }
  return "ok";
}

/** A fixed 32-bit mixer (splitmix32 finaliser): per-op Zobrist keys without any randomness. */
function mix(x: number): number {
  let z = (x * 0x9e3779b9) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}
