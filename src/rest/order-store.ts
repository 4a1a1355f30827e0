/**
 * Barbican orders (`POST /v1/orders/` with `type: key`). lockbox makes the key at once, so an
 * order is born ACTIVE and only remembers what it asked for and which secret it made. Orders live
 * in the store's `meta` sublevel under `barbican-order/<project>/<order id>`, each value a JSON
 * body followed by an HMAC-SHA256 tag under a subkey of the cluster master key: a record edited,
 * moved to another project or id, or pointed at another secret on disk fails its check
 * (DATA_LOSS), so a client is never handed another key's reference. An order of another project is
 * NOT_FOUND, exactly like a missing one.
 */
import { timingSafeEqual } from "node:crypto";
import type { Barrier } from "../crypto/barrier.js";
import { LockboxError, notFound } from "../errors.js";
import type { PeerStore } from "../store/peer-store.js";

export interface OrderMeta {
  name: string | null;
  algorithm: string;
  bit_length: number;
  mode: string | null;
  expiration: string | null;
  payload_content_type: string | null;
}

export interface Order {
  id: string;
  project: string;
  /** Identity that placed the order. */
  creator: string;
  secretId: string;
  createdAtMs: number;
  meta: OrderMeta;
}

/** Orders one listing reads at most; Castellan never deletes its orders, so a project's pile up. */
export const ORDERS_LISTED_MAX = 10_000;
const PREFIX = "barbican-order/";
const TAG_BYTES = 32;
const MAC_PURPOSE = "barbican-order/v1";

export class OrderStore {
  constructor(
    private readonly store: PeerStore,
    private readonly barrier: Barrier,
  ) {}

  async put(order: Order): Promise<void> {
    const body = Buffer.from(JSON.stringify(order), "utf8");
    const tag = this.barrier.mac(MAC_PURPOSE, body);
    await this.store.write([
      {
        type: "put",
        sublevel: "meta",
        key: keyOf(order.project, order.id),
        value: Buffer.concat([body, tag]),
      },
    ]);
  }

  /** The order `id` of `project`; NOT_FOUND when missing or of another project. */
  async get(project: string, id: string): Promise<Order> {
    this.barrier.requireUnsealed();
    const value = await this.store.get("meta", keyOf(project, id));
    if (value === undefined) throw notFound(`order ${id}`);
    return this.open(value, project, id);
  }

  async delete(project: string, id: string): Promise<void> {
    await this.get(project, id);
    await this.store.write([{ type: "del", sublevel: "meta", key: keyOf(project, id) }]);
  }

  /** Every order of `project` (at most ORDERS_LISTED_MAX), oldest first. */
  async list(project: string): Promise<Order[]> {
    this.barrier.requireUnsealed();
    const prefix = `${PREFIX}${project}/`;
    const out: Order[] = [];
    for await (const [key, value] of this.store
      .sublevel("meta")
      .iterator({ gte: prefix, lt: prefix + "\xff", limit: ORDERS_LISTED_MAX })) {
      out.push(this.open(value, project, key.slice(prefix.length)));
    }
    return out.sort((a, b) => a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : 1));
  }

  private open(value: Uint8Array, project: string, id: string): Order {
    const damaged = () => new LockboxError("DATA_LOSS", `integrity check failed for order ${id}`);
    if (value.length <= TAG_BYTES) throw damaged();
    const body = value.subarray(0, value.length - TAG_BYTES);
    const tag = value.subarray(value.length - TAG_BYTES);
    if (!timingSafeEqual(tag, this.barrier.mac(MAC_PURPOSE, body))) throw damaged();
    let order: Order;
    try {
      order = JSON.parse(Buffer.from(body).toString("utf8")) as Order;
    } catch {
      throw damaged();
    }
    // The tag covers the body; the key it was stored under must agree with it.
    if (order.project !== project || order.id !== id) throw damaged();
    return order;
  }
}

const keyOf = (project: string, id: string): string => `${PREFIX}${project}/${id}`;
