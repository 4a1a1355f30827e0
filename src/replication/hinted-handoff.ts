/**
 * Hinted handoff (DESIGN §4, Swift's handoff revert): a peer holding copies for other peers (hints,
 * written by replica puts with `hintFor`) pushes each such record to EVERY primary of its partition,
 * and deletes the hint (and its own copy, when it is no primary) only after every one of them answered
 * that it synced the record. Until then the hint stays and the next pass tries again: a handoff copy
 * is never the first copy dropped.
 */
import type { Scheduler } from "../../cluster/raft/driver/scheduler.js";
import type { ItemSender } from "./link-batcher.js";
import { Periodic } from "./periodic.js";
import type { PlacementView } from "./placement-view.js";
import type { Replica } from "./replica.js";
import type { ReplicaStore } from "./replica-store.js";
import type { ReplicationBugs } from "./replication-bugs.js";

export interface HandoffOptions {
  replica: Replica;
  store: ReplicaStore;
  placement: PlacementView;
  sender: ItemSender;
  scheduler: Scheduler;
  intervalMs?: number;
  /** Hints handled per pass (the rest wait for later passes). */
  hintsPerPassMax?: number;
  bugs?: ReplicationBugs;
}

export interface HandoffMetrics {
  passes: number;
  pushed: number;
  delivered: number;
  dropped: number;
}

export class HandoffRunner {
  private readonly periodic: Periodic;
  private readonly hintsPerPassMax: number;
  readonly metrics: HandoffMetrics = { passes: 0, pushed: 0, delivered: 0, dropped: 0 };

  constructor(private readonly options: HandoffOptions) {
    this.hintsPerPassMax = options.hintsPerPassMax ?? 1024;
    this.periodic = new Periodic(options.scheduler, options.intervalMs ?? 10_000, () => this.pass());
  }

  start(): void {
    this.periodic.start();
  }

  stop(): void {
    this.periodic.stop();
  }

  runOnce(): Promise<void> {
    return this.periodic.runOnce();
  }

  private async pass(): Promise<void> {
    this.metrics.passes += 1;
    const { store, replica, placement, sender } = this.options;
    const hints = await store.hints(this.hintsPerPassMax);
    const groups = new Map<string, { partition: number; id: string; owners: string[] }>();
    for (const h of hints) {
      const k = `${h.partition}/${h.id}`;
      const g = groups.get(k) ?? { partition: h.partition, id: h.id, owners: [] };
      g.owners.push(h.owner);
      groups.set(k, g);
    }
    await Promise.all(
      [...groups.values()].map(async ({ partition, id, owners }) => {
        const record = await replica.localRecord(partition, id);
        if (record === undefined) {
          // Reclaimed, or removed as damaged: nothing left to take home.
          this.metrics.dropped += 1;
          await replica.dropHints(partition, id, owners);
          return;
        }
        const primaries = placement.primaries(partition);
        const targets = primaries.filter((p) => p !== sender.self);
        const results = await Promise.all(
          targets.map(async (peer) => {
            if (!placement.isUp(peer)) return false;
            this.metrics.pushed += 1;
            const r = await sender.request(peer, { kind: "put", partition, record });
            return r.ok;
          }),
        );
        const held = this.options.bugs?.handoffDropEarly
          ? targets.some((t, i) => owners.includes(t) && results[i])
          : results.every((ok) => ok);
        if (!held) return;
        this.metrics.delivered += 1;
        await replica.finishHandoff(partition, id, owners, record, primaries.includes(sender.self));
      }),
    );
  }
}
