/**
 * The leader's ring duty (DESIGN §4): keep the ring in the control state in line with the members.
 * Active (and down) members are on the ring with their zone and weight; a leaving member stays with
 * weight 0, so it drains; every other member (removed, fenced, not yet joined) is taken off. The
 * replica count is N = min(configured N, members with weight), so one peer alone is N = 1 and the
 * ring grows to N = 3 as peers join. The builder (cluster/ring) does the rest: minimal movement, one
 * replica of a partition per rebalance, min_part_hours. Its output is deterministic, and ring.put
 * (and ring.part, for a ring larger than one command) refuses a version that is not newer, so two
 * leaders racing cannot both win.
 *
 * When nothing changed, a rebalance is still tried every `retryMs` while the last one this leader
 * proposed was held back (by min_part_hours: `finished` false), and proposed only if it moves
 * something; once a rebalance finished, an unchanged ring is left alone.
 */
import { decodeRing, encodeRing, RingBuilder, type RingPeer } from "../../cluster/ring/index.js";
import type { ControlCommand } from "./control-command.js";
import { CONTROL_LIMITS, type MemberRecord } from "./control-records.js";
import type { ControlState } from "./control-state.js";

export interface RingDutyOptions {
  /** Fixed when the cluster is created: every peer's config has the same (peer-core pins it). */
  partitionPower: number;
  /** The N the cluster aims for (fewer while fewer members can hold data). */
  replicas: number;
  minPartHours: number;
  /** How often an unchanged ring is rebalanced again (default one minute). */
  retryMs?: number;
}

const ON_RING: ReadonlySet<MemberRecord["state"]> = new Set(["active", "down"]);

export class RingDuty {
  #lastTryMs = Number.NEGATIVE_INFINITY;
  /** The last rebalance finished (false until this leader ran one: the ring it found may not have). */
  #settled = false;

  constructor(private readonly options: RingDutyOptions) {}

  /**
   * The commands this leader should propose now, in order, or null: one ring.put, or for a ring
   * larger than one command (partition power above about 11 with N = 3) its ring.part commands.
   */
  next(state: ControlState, nowMs: number): ControlCommand[] | null {
    const wanted = new Map<string, RingPeer>();
    const draining = new Set<string>();
    for (const m of state.members()) {
      if (ON_RING.has(m.state)) wanted.set(m.id, { id: m.id, zone: m.zone, weight: m.weight });
      else if (m.state === "leaving") draining.add(m.id);
    }
    const weighted = wanted.size;
    if (weighted === 0) return null;
    const replicas = Math.min(this.options.replicas, weighted);
    const current = state.ring();
    let builder: RingBuilder;
    let before: number;
    if (current === null) {
      builder = RingBuilder.create({
        partPower: this.options.partitionPower,
        replicas,
        minPartHours: this.options.minPartHours,
      });
      before = -1;
    } else {
      builder = RingBuilder.fromState(decodeRing(new Uint8Array(Buffer.from(current.bytes, "base64"))));
      before = builder.version;
    }
    const onRing = new Map(builder.peers().map((p) => [p.id, p]));
    for (const [id, p] of onRing) {
      const w = wanted.get(id);
      if (w === undefined) {
        if (draining.has(id)) {
          if (p.weight !== 0) builder.setWeight(id, 0);
        } else builder.removePeer(id);
        continue;
      }
      if (p.zone !== w.zone) builder.setZone(id, w.zone);
      if (p.weight !== w.weight) builder.setWeight(id, w.weight);
    }
    for (const [id, w] of wanted) if (!onRing.has(id)) builder.addPeer(w);
    if (builder.replicas !== replicas) builder.setReplicas(replicas);
    const changed = builder.version !== before;
    if (!changed && (this.#settled || nowMs - this.#lastTryMs < (this.options.retryMs ?? 60_000)))
      return null;
    this.#lastTryMs = nowMs;
    const result = builder.rebalance(nowMs);
    this.#settled = result.finished;
    if (!changed && result.moved === 0) return null;
    builder.validate();
    return ringCommands(builder.version, encodeRing(builder.toState()));
  }
}

/** ring.put for a ring that fits one command; else ring.part commands of CONTROL_LIMITS.ringPartBytes each. */
export function ringCommands(version: number, bytes: Uint8Array): ControlCommand[] {
  const part = CONTROL_LIMITS.ringPartBytes;
  if (bytes.length <= part) {
    return [{ type: "ring.put", ring: { version, bytes: Buffer.from(bytes).toString("base64") } }];
  }
  const count = Math.ceil(bytes.length / part);
  return Array.from({ length: count }, (_, index) => ({
    type: "ring.part" as const,
    version,
    index,
    count,
    bytes: Buffer.from(bytes.subarray(index * part, (index + 1) * part)).toString("base64"),
  }));
}
