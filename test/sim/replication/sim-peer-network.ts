import type { PeerLink, ReplicaBatch, ReplicaBatchReply } from "../../../src/replication/peer-link.js";
import type { Prng } from "../prng.js";
import type { SimProcess } from "../sim-scheduler.js";
import type { SimLoop } from "./sim-loop.js";

export interface NetFaults {
  dropRate: number;
  duplicateRate: number;
  delayMsMin: number;
  delayMsMax: number;
}

/** The running incarnation of a peer, as the network reaches it. */
export interface NetEndpoint {
  proc: SimProcess;
  handle(batch: ReplicaBatch): Promise<ReplicaBatchReply>;
}

/**
 * The replication network: a batch and its reply each travel after a drawn delay (so they reorder),
 * may be dropped or duplicated, and never cross a cut link. A lost batch or reply leaves the sender's
 * promise pending: the sender's batch deadline (link-batcher.ts) is what notices. Bytes are copied at
 * every hop, as a real network would, so no two peers share a buffer.
 */
export class SimPeerNetwork {
  private readonly cuts = new Set<string>();
  private readonly endpoints = new Map<string, NetEndpoint>();
  private readonly netProc: SimProcess;
  sent = 0;
  dropped = 0;

  constructor(
    private readonly loop: SimLoop,
    private readonly prng: Prng,
    public faults: NetFaults,
    netProc: SimProcess,
  ) {
    this.netProc = netProc;
  }

  attach(peer: string, endpoint: NetEndpoint): void {
    this.endpoints.set(peer, endpoint);
  }

  cut(a: string, b: string): void {
    this.cuts.add(`${a}->${b}`);
    this.cuts.add(`${b}->${a}`);
  }

  heal(a: string, b: string): void {
    this.cuts.delete(`${a}->${b}`);
    this.cuts.delete(`${b}->${a}`);
  }

  healAll(): void {
    this.cuts.clear();
  }

  /** The PeerLink of one incarnation of `from`. */
  linkFor(from: string, proc: SimProcess): PeerLink {
    return {
      send: (to, batch) =>
        new Promise<ReplicaBatchReply>((resolve) => {
          this.sent++;
          const copies = this.prng.chance(this.faults.duplicateRate) ? 2 : 1;
          for (let c = 0; c < copies; c++) {
            this.hop(from, to, () => {
              const target = this.endpoints.get(to);
              if (target === undefined || !target.proc.alive) return;
              const targetProc = target.proc;
              void target.handle(cloneBatch(batch)).then((reply) => {
                if (!targetProc.alive) return;
                this.hop(to, from, () => {
                  if (proc.alive) resolve(cloneReply(reply));
                });
              });
            });
          }
        }),
    };
  }

  private hop(from: string, to: string, deliver: () => void): void {
    if (this.cuts.has(`${from}->${to}`) || this.prng.chance(this.faults.dropRate)) {
      this.dropped++;
      return;
    }
    const delay = this.prng.range(this.faults.delayMsMin, this.faults.delayMsMax);
    this.loop.for(this.netProc).after(delay, () => {
      if (this.cuts.has(`${from}->${to}`)) {
        this.dropped++;
        return;
      }
      deliver();
    });
  }
}

function cloneBatch(b: ReplicaBatch): ReplicaBatch {
  return {
    from: b.from,
    items: b.items.map((i) => (i.kind === "put" ? { ...i, record: new Uint8Array(i.record) } : { ...i })),
  };
}

function cloneReply(r: ReplicaBatchReply): ReplicaBatchReply {
  return {
    results: r.results.map((x) => {
      if (!x.ok) return { ...x };
      if (x.kind === "get") return { ...x, record: x.record === null ? null : new Uint8Array(x.record) };
      if (x.kind === "digest") return { ...x, digest: new Uint8Array(x.digest) };
      if (x.kind === "pull") return { ...x, records: x.records.map((y) => new Uint8Array(y)) };
      return { ...x };
    }),
  };
}
