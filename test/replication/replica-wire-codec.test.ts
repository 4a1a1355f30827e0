/**
 * The replica wire codec through real protobuf bytes (the service definition the peer link and the
 * peer service use). A proto3 encoder may leave any field at its default off the wire (protobufjs
 * writes what is set; others write nothing), and such a field arrives absent, so every default
 * (partition 0, no hint, offset 0, no more parts, not found, empty lists) must read as itself, and
 * the fields that must not be empty are still refused when absent.
 */
import test from "ava";
import type { ReplicaItem, ReplicaItemResult } from "../../src/replication/peer-link.js";
import {
  decodeBatchFrame,
  decodeReplyPart,
  encodeItem,
  encodeResult,
  ReplicaWireInvalid,
  type WireBatchFrame,
  type WireReplyFrame,
} from "../../src/replication/replica-wire-codec.js";
import { loadReplicationService } from "../../src/replication/replication-proto.js";

const replicate = loadReplicationService().service.Replicate!;
const overTheWire = (frame: WireBatchFrame): unknown =>
  replicate.requestDeserialize(replicate.requestSerialize(frame) as Buffer);
const replyOverTheWire = (frame: WireReplyFrame): unknown =>
  replicate.responseDeserialize(replicate.responseSerialize(frame) as Buffer);

test("items at their proto3 defaults arrive as sent: partition 0, no hint, empty bucket list", (t) => {
  const items: ReplicaItem[] = [
    { kind: "put", partition: 0, record: new Uint8Array([1, 2, 3]) },
    { kind: "put", partition: 7, record: new Uint8Array([4]), hintFor: "peer-b" },
    { kind: "get", partition: 0, id: "00000007-0000-8000-8000-000000000001" },
    { kind: "digest", partition: 0 },
    { kind: "pull", partition: 0, buckets: [] },
    { kind: "pull", partition: 3, buckets: [0, 5] },
  ];
  const decoded = decodeBatchFrame(
    overTheWire({ request_id: 1, from: "peer-a", items: items.map(encodeItem) }),
  );
  t.is(decoded.from, "peer-a");
  t.deepEqual(decoded.items, items);
});

test("items whose default fields are left off the wire read as those defaults", (t) => {
  const record = new Uint8Array([1, 2, 3]);
  const sparse = [
    { put: { record } },
    { get: { id: "00000007-0000-8000-8000-000000000001" } },
    { digest: {} },
    { pull: {} },
  ] as unknown as WireBatchFrame["items"];
  const decoded = decodeBatchFrame(overTheWire({ request_id: 1, from: "peer-a", items: sparse }));
  t.deepEqual(decoded.items, [
    { kind: "put", partition: 0, record },
    { kind: "get", partition: 0, id: "00000007-0000-8000-8000-000000000001" },
    { kind: "digest", partition: 0 },
    { kind: "pull", partition: 0, buckets: [] },
  ]);
});

test("a put without record bytes or a get without an id is refused, though proto3 sends nothing for them", (t) => {
  const refused = (item: WireBatchFrame["items"][number]): string | undefined =>
    t.throws(() => decodeBatchFrame(overTheWire({ request_id: 1, from: "peer-a", items: [item] })), {
      instanceOf: ReplicaWireInvalid,
    })?.field;
  t.is(refused({ partition: 0, put: { record: new Uint8Array(0), hint_for: "" } }), "items[0].put.record");
  t.is(refused({ put: {} } as never), "items[0].put.record");
  t.is(refused({ partition: 0, get: { id: "" } }), "items[0].get.id");
  t.is(refused({ get: {} } as never), "items[0].get.id");
  t.is(refused({ partition: 0 }), "items[0].kind");
  t.throws(() => decodeBatchFrame(overTheWire({ request_id: 1, from: "", items: [] })), {
    instanceOf: ReplicaWireInvalid,
  });
});

test("results at their proto3 defaults arrive as sent: offset 0, last part, not found, empty digest and list", (t) => {
  const results: ReplicaItemResult[] = [
    { ok: true, kind: "put" },
    { ok: true, kind: "get", record: null },
    { ok: true, kind: "get", record: new Uint8Array([9, 9]) },
    { ok: true, kind: "digest", digest: new Uint8Array(0) },
    { ok: true, kind: "pull", records: [] },
    { ok: true, kind: "pull", records: [new Uint8Array([1])] },
    { ok: false, code: "UNAVAILABLE", message: "" },
  ];
  const part = decodeReplyPart(
    replyOverTheWire({ request_id: 1, results: results.map(encodeResult), offset: 0, more: false }),
    results.length,
    0,
  );
  t.deepEqual(part, { results, more: false });
  const sparse = decodeReplyPart(
    replyOverTheWire({
      request_id: 1,
      results: [{ put: {} }, { get: {} }, { digest: {} }, { pull: {} }],
    } as unknown as WireReplyFrame),
    4,
    0,
  );
  t.deepEqual(sparse, {
    results: [
      { ok: true, kind: "put" },
      { ok: true, kind: "get", record: null },
      { ok: true, kind: "digest", digest: new Uint8Array(0) },
      { ok: true, kind: "pull", records: [] },
    ],
    more: false,
  });
  // A later part: a non-default offset and `more` still arrive and are checked.
  const later = decodeReplyPart(
    replyOverTheWire({ request_id: 1, results: [encodeResult(results[0]!)], offset: 2, more: true }),
    4,
    2,
  );
  t.deepEqual(later, { results: [results[0]!], more: true });
  t.throws(
    () =>
      decodeReplyPart(
        replyOverTheWire({ request_id: 1, results: [encodeResult(results[0]!)], offset: 0, more: false }),
        2,
        1,
      ),
    { instanceOf: ReplicaWireInvalid, message: /reply\.offset/ },
  );
});
