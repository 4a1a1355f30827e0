import test from "ava";
import { nodeScheduler } from "../../cluster/raft/driver/scheduler.js";
import { LinkBatcher } from "../../src/replication/link-batcher.js";
import type { PeerLink, ReplicaBatch, ReplicaBatchReply } from "../../src/replication/peer-link.js";

// These tests use scripted PeerLinks (test doubles of the transport): they pin the batcher's own rules.
const neverLocal = (): Promise<ReplicaBatchReply> => Promise.reject(new Error("no local items here"));

test("items queued in one turn for one peer leave as one message, answered item by item (scripted link)", async (t) => {
  const sent: ReplicaBatch[] = [];
  const link: PeerLink = {
    send: async (_to, batch) => {
      sent.push(batch);
      return { results: batch.items.map(() => ({ ok: true as const, kind: "put" as const })) };
    },
  };
  const b = new LinkBatcher({ self: "a", link, scheduler: nodeScheduler, local: neverLocal });
  const results = await Promise.all(
    Array.from({ length: 100 }, () =>
      b.request("b", { kind: "put", partition: 1, record: new Uint8Array([1]) }),
    ),
  );
  t.is(sent.length, 1);
  t.is(sent[0]!.items.length, 100);
  t.true(results.every((r) => r.ok));
});

test("a batch that gets no answer fails its items UNAVAILABLE at the batch deadline (scripted link)", async (t) => {
  const link: PeerLink = { send: () => new Promise(() => {}) };
  const b = new LinkBatcher({
    self: "a",
    link,
    scheduler: nodeScheduler,
    local: neverLocal,
    batchTimeoutMs: 50,
  });
  const r = await b.request("b", { kind: "digest", partition: 0 });
  t.like(r, { ok: false, code: "UNAVAILABLE" });
});

test("a reply that does not answer every item, or answers with the wrong kind, becomes failures (scripted link)", async (t) => {
  let reply: unknown = { results: [] };
  const link: PeerLink = { send: async () => reply as ReplicaBatchReply };
  const b = new LinkBatcher({ self: "a", link, scheduler: nodeScheduler, local: neverLocal });
  t.like(await b.request("b", { kind: "digest", partition: 0 }), { ok: false, code: "UNAVAILABLE" });
  reply = { results: [{ ok: true, kind: "get", record: "not bytes" }] };
  t.like(await b.request("b", { kind: "get", partition: 0, id: "x" }), { ok: false, code: "INTERNAL" });
  reply = { results: [{ ok: true, kind: "put" }] };
  t.like(await b.request("b", { kind: "digest", partition: 0 }), { ok: false, code: "INTERNAL" });
});

test("more items than the queue bound fail at once with RESOURCE_EXHAUSTED (scripted link)", async (t) => {
  const link: PeerLink = { send: () => new Promise(() => {}) };
  const b = new LinkBatcher({
    self: "a",
    link,
    scheduler: nodeScheduler,
    local: neverLocal,
    queuedItemsMax: 3,
    inflightBatchesMax: 1,
    batchItemsMax: 1,
    batchTimeoutMs: 100,
  });
  const all = Array.from({ length: 6 }, () => b.request("b", { kind: "digest", partition: 0 }));
  const first = await Promise.race([all[5]!, new Promise((r) => setTimeout(() => r("pending"), 20))]);
  t.like(first, { ok: false, code: "RESOURCE_EXHAUSTED" });
  await Promise.all(all);
});

test("a get's decoded record is kept only from this peer's own replica: one in a reply from the network is dropped (scripted link)", async (t) => {
  const record = new Uint8Array([7, 7, 7]);
  const decoded = { forged: true } as unknown;
  const reply = async (): Promise<ReplicaBatchReply> =>
    ({ results: [{ ok: true, kind: "get", record, decoded }] }) as unknown as ReplicaBatchReply;
  const b = new LinkBatcher({ self: "a", link: { send: reply }, scheduler: nodeScheduler, local: reply });
  const remote = await b.request("b", { kind: "get", partition: 0, id: "x" });
  t.deepEqual(remote, { ok: true, kind: "get", record });
  t.false("decoded" in remote, "a network answer never brings a record the coordinator would skip decoding");
  const local = await b.request("a", { kind: "get", partition: 0, id: "x" });
  t.deepEqual(local, { ok: true, kind: "get", record, decoded });
});
