/**
 * Batches items for one peer into one message (DESIGN §4: "long-lived peer streams that batch many
 * records per message"). Items queued in the same turn for the same peer leave as one batch; a batch
 * holds at most `batchItemsMax` items, at most `inflightBatchesMax` batches per peer are unanswered at
 * once (the rest wait, up to `queuedItemsMax`, beyond which items fail at once), and every batch has a
 * deadline. An item never waits forever: it gets its result, or a failure UNAVAILABLE when the batch
 * is lost, refused or late. Items for this peer itself go to the local replica without a message.
 */
import type { Scheduler } from "../../cluster/raft/driver/scheduler.js";
import {
  BATCH_ITEMS_MAX,
  checkResult,
  failure,
  type PeerLink,
  type ReplicaBatch,
  type ReplicaBatchReply,
  type ReplicaItem,
  type ReplicaItemResult,
} from "./peer-link.js";

/** What the coordinator, the handoff runner and anti-entropy send through. */
export interface ItemSender {
  readonly self: string;
  request(to: string, item: ReplicaItem): Promise<ReplicaItemResult>;
}

export interface LinkBatcherOptions {
  self: string;
  link: PeerLink;
  scheduler: Scheduler;
  /** Handles items addressed to this peer (its Replica). */
  local: (batch: ReplicaBatch) => Promise<ReplicaBatchReply>;
  batchTimeoutMs?: number;
  batchItemsMax?: number;
  inflightBatchesMax?: number;
  queuedItemsMax?: number;
}

interface Queued {
  item: ReplicaItem;
  resolve: (r: ReplicaItemResult) => void;
}

interface PeerQueue {
  queued: Queued[];
  inflight: number;
  scheduled: boolean;
}

export interface LinkBatcherMetrics {
  batchesSent: number;
  itemsSent: number;
  batchesFailed: number;
  itemsRefused: number;
}

export class LinkBatcher implements ItemSender {
  readonly self: string;
  private readonly peers = new Map<string, PeerQueue>();
  private readonly batchTimeoutMs: number;
  private readonly batchItemsMax: number;
  private readonly inflightBatchesMax: number;
  private readonly queuedItemsMax: number;
  readonly metrics: LinkBatcherMetrics = { batchesSent: 0, itemsSent: 0, batchesFailed: 0, itemsRefused: 0 };

  constructor(private readonly options: LinkBatcherOptions) {
    this.self = options.self;
    this.batchTimeoutMs = options.batchTimeoutMs ?? 5_000;
    this.batchItemsMax = Math.min(options.batchItemsMax ?? 256, BATCH_ITEMS_MAX);
    this.inflightBatchesMax = options.inflightBatchesMax ?? 4;
    this.queuedItemsMax = options.queuedItemsMax ?? 10_000;
  }

  request(to: string, item: ReplicaItem): Promise<ReplicaItemResult> {
    let q = this.peers.get(to);
    if (q === undefined) {
      q = { queued: [], inflight: 0, scheduled: false };
      this.peers.set(to, q);
    }
    if (q.queued.length >= this.queuedItemsMax) {
      this.metrics.itemsRefused += 1;
      return Promise.resolve(
        failure("RESOURCE_EXHAUSTED", `more than ${this.queuedItemsMax} items queued for ${to}`),
      );
    }
    const peerQueue = q;
    return new Promise<ReplicaItemResult>((resolve) => {
      peerQueue.queued.push({ item, resolve });
      this.schedule(to, peerQueue);
    });
  }

  private schedule(to: string, q: PeerQueue): void {
    if (q.scheduled) return;
    q.scheduled = true;
    this.options.scheduler.soon(() => {
      q.scheduled = false;
      this.pump(to, q);
    });
  }

  private pump(to: string, q: PeerQueue): void {
    while (q.queued.length > 0 && q.inflight < this.inflightBatchesMax) {
      const group = q.queued.splice(0, this.batchItemsMax);
      q.inflight += 1;
      void this.sendBatch(to, group).finally(() => {
        q.inflight -= 1;
        if (q.queued.length > 0) this.schedule(to, q);
      });
    }
  }

  private async sendBatch(to: string, group: Queued[]): Promise<void> {
    const batch: ReplicaBatch = { from: this.self, items: group.map((g) => g.item) };
    this.metrics.batchesSent += 1;
    this.metrics.itemsSent += group.length;
    let settled = false;
    const settle = (results: ReplicaItemResult[] | string): void => {
      if (settled) return;
      settled = true;
      if (typeof results === "string") {
        this.metrics.batchesFailed += 1;
        for (const g of group) g.resolve(failure("UNAVAILABLE", `batch to ${to}: ${results}`));
      } else {
        group.forEach((g, i) => g.resolve(checkResult(g.item, results[i], to === this.self)));
      }
    };
    await new Promise<void>((done) => {
      const cancel = this.options.scheduler.after(this.batchTimeoutMs, () => {
        settle(`no answer within ${this.batchTimeoutMs} ms`);
        done();
      });
      const sent = to === this.self ? this.options.local(batch) : this.options.link.send(to, batch);
      sent.then(
        (reply) => {
          cancel();
          if (
            typeof reply !== "object" ||
            reply === null ||
            !Array.isArray(reply.results) ||
            reply.results.length !== group.length
          ) {
            settle("reply does not answer every item");
          } else {
            settle(reply.results);
          }
          done();
        },
        () => {
          cancel();
          settle("link failed");
          done();
        },
      );
    });
  }
}
