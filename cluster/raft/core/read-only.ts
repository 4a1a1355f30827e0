/**
 * Pending ReadIndex requests at the leader (etcd readOnly, "safe" option): each waits for a quorum of
 * heartbeat acks carrying its context, proving the leader was still leader when the read arrived.
 */
export interface ReadRequest {
  index: number;
  /** Who asked: the leader itself or a follower that forwarded the request. */
  from: string;
  context: Uint8Array;
  acks: Set<string>;
}

export class ReadOnly {
  private readonly pending = new Map<string, ReadRequest>();
  private readonly queue: string[] = [];

  constructor(private readonly requestsMax: number) {}

  size(): number {
    return this.queue.length;
  }

  /** Returns false (request dropped) when the context is already pending or the queue is full. */
  add(index: number, from: string, context: Uint8Array, self: string): boolean {
    const key = contextKey(context);
    if (this.pending.has(key) || this.queue.length >= this.requestsMax) return false;
    this.pending.set(key, { index, from, context, acks: new Set([self]) });
    this.queue.push(key);
    return true;
  }

  /** Record an ack; returns the request's ack set, or undefined if unknown. */
  recvAck(from: string, context: Uint8Array): Set<string> | undefined {
    const req = this.pending.get(contextKey(context));
    if (req === undefined) return undefined;
    req.acks.add(from);
    return req.acks;
  }

  /** Pop every request up to and including `context` (acked later requests confirm earlier ones). */
  advance(context: Uint8Array): ReadRequest[] {
    const key = contextKey(context);
    const at = this.queue.indexOf(key);
    if (at < 0) return [];
    const keys = this.queue.splice(0, at + 1);
    return keys.map((k) => {
      const r = this.pending.get(k)!;
      this.pending.delete(k);
      return r;
    });
  }

  lastContext(): Uint8Array | undefined {
    const k = this.queue[this.queue.length - 1];
    return k === undefined ? undefined : this.pending.get(k)!.context;
  }
}

function contextKey(context: Uint8Array): string {
  let s = "";
  for (const b of context) s += b.toString(16).padStart(2, "0");
  return s;
}
