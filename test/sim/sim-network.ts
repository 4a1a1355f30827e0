import type { Message } from "../../cluster/raft/core/index.js";
import type { Prng } from "./prng.js";

/** Per-message fault rates; all probabilities in [0, 1]. */
export interface LinkFaults {
  dropRate: number;
  duplicateRate: number;
  /** Each message is delayed by a uniform number of ticks in [delayTicksMin, delayTicksMax] (reorders). */
  delayTicksMin: number;
  delayTicksMax: number;
}

interface InFlight {
  deliverAtTick: number;
  /** Tie-breaker drawn at send time: messages due on the same tick arrive in a random order. */
  order: number;
  message: Message;
}

/**
 * The in-memory network (etcd raft_test.go `network`): drop, cut (one-way or both), isolate, heal, hook.
 * Delivery is in tick order; within a tick in an order drawn from the PRNG.
 */
export class SimNetwork {
  private inflight: InFlight[] = [];
  /** "from->to" links that drop everything. */
  private readonly cuts = new Set<string>();
  /** "from->to" links cut until a tick, whatever heal() does (long one-way partitions). */
  private readonly longCuts = new Map<string, number>();
  private nowTick = 0;
  /** "from->to" extra drop rates. */
  private readonly drops = new Map<string, number>();
  private hookFn: ((m: Message) => boolean) | null = null;
  sent = 0;
  dropped = 0;
  duplicated = 0;

  constructor(
    private readonly prng: Prng,
    public faults: LinkFaults,
  ) {}

  /** Drop messages from -> to with probability `rate` (on top of the global rate). */
  drop(from: string, to: string, rate: number): void {
    this.drops.set(`${from}->${to}`, rate);
  }

  /** Cut the link from -> to only (one-way partition). */
  cutOneWay(from: string, to: string): void {
    this.cuts.add(`${from}->${to}`);
  }

  /** Cut from -> to until `untilTick`; heal() leaves it in place. */
  cutOneWayUntil(from: string, to: string, untilTick: number): void {
    this.longCuts.set(`${from}->${to}`, untilTick);
  }

  /** Ends every cut, long ones included (faults stop). */
  healAll(): void {
    this.heal();
    this.longCuts.clear();
  }

  private cutNow(link: string): boolean {
    if (this.cuts.has(link)) return true;
    const until = this.longCuts.get(link);
    if (until === undefined) return false;
    if (until > this.nowTick) return true;
    this.longCuts.delete(link);
    return false;
  }

  /** Cut both directions between a and b. */
  cut(a: string, b: string): void {
    this.cutOneWay(a, b);
    this.cutOneWay(b, a);
  }

  /** Cut `id` off from all `others`, both ways. */
  isolate(id: string, others: readonly string[]): void {
    for (const o of others) if (o !== id) this.cut(id, o);
  }

  /** Split into two sides that cannot talk to each other. */
  partition(sideA: readonly string[], sideB: readonly string[]): void {
    for (const a of sideA) for (const b of sideB) this.cut(a, b);
  }

  /** Remove every cut and per-link drop rate (global fault rates stay). */
  heal(): void {
    this.cuts.clear();
    this.drops.clear();
  }

  /** Inspect (and possibly drop: return false) every message at send time. */
  hook(fn: ((m: Message) => boolean) | null): void {
    this.hookFn = fn;
  }

  isCut(from: string, to: string): boolean {
    return this.cuts.has(`${from}->${to}`);
  }

  send(m: Message, nowTick: number): void {
    this.sent++;
    if (this.hookFn !== null && !this.hookFn(m)) return this.countDrop();
    const link = `${m.from}->${m.to}`;
    this.nowTick = nowTick;
    if (this.cutNow(link)) return this.countDrop();
    if (this.prng.chance(this.faults.dropRate) || this.prng.chance(this.drops.get(link) ?? 0))
      return this.countDrop();
    const copies = this.prng.chance(this.faults.duplicateRate) ? 2 : 1;
    if (copies === 2) this.duplicated++;
    for (let i = 0; i < copies; i++) {
      const delay = this.prng.range(this.faults.delayTicksMin, this.faults.delayTicksMax);
      this.inflight.push({ deliverAtTick: nowTick + delay, order: this.prng.nextU32(), message: m });
    }
  }

  /** Messages due by `nowTick`, in delivery order; cuts made after sending also apply. */
  takeDue(nowTick: number): Message[] {
    this.nowTick = nowTick;
    const due: InFlight[] = [];
    const rest: InFlight[] = [];
    for (const f of this.inflight) (f.deliverAtTick <= nowTick ? due : rest).push(f);
    this.inflight = rest;
    due.sort((a, b) => a.deliverAtTick - b.deliverAtTick || a.order - b.order);
    const out: Message[] = [];
    for (const f of due) {
      if (this.cutNow(`${f.message.from}->${f.message.to}`)) this.countDrop();
      else out.push(f.message);
    }
    return out;
  }

  /**
   * A crashed sender's messages still in its socket buffers may be lost: each in-flight message from `id`
   * is dropped with probability `rate`. (Messages TO a crashed node stay: they may arrive after a restart.)
   */
  dropFromCrashed(id: string, rate: number): void {
    this.inflight = this.inflight.filter((f) => f.message.from !== id || !this.prng.chance(rate));
  }

  inflightCount(): number {
    return this.inflight.length;
  }

  private countDrop(): void {
    this.dropped++;
  }
}
