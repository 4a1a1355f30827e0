import test from "ava";
import { isNodeId, NODE_ID_CHARS_MAX } from "../../cluster/node-id.js";
import { validateMessage } from "../../cluster/raft/core/validate-message.js";
import { MessageType } from "../../cluster/raft/core/types.js";
import { newPeerConfig, validatePeerConfig } from "../../src/config/peer-config.js";

const GOOD = ["1", "n2", "peer-1", "zone_a.peer-07", "P".repeat(NODE_ID_CHARS_MAX)];
const BAD = [
  "",
  "P".repeat(NODE_ID_CHARS_MAX + 1),
  "-peer",
  ".peer",
  "_peer",
  "has space",
  "peer\n2",
  "peer\u001b[2J",
  "peer:1",
  "peer@host",
  "péer",
  "peer/1",
];

test("a node id is 1..64 letters, digits, '.', '_', '-', starting with a letter or digit", (t) => {
  for (const id of GOOD) t.true(isNodeId(id), id);
  for (const id of BAD) t.false(isNodeId(id), JSON.stringify(id));
  for (const v of [undefined, null, 7, ["a"], { id: "a" }]) t.false(isNodeId(v));
});

// One rule for every caller: a peer whose config names it X must be a raft member X, and the raft
// core must not accept from the network an id the peer would refuse in its config.
test("the peer config and the raft core's message check accept exactly the node ids isNodeId accepts", (t) => {
  const good = newPeerConfig({ peerId: "peer-1", listen: "127.0.0.1:7443" });
  for (const id of [...GOOD, ...BAD]) {
    // Accepted: no throw, and no refusal returned (the core may refuse by throwing or as a value).
    const accepts = (f: () => unknown): boolean => {
      try {
        return f() == null;
      } catch {
        return false;
      }
    };
    const label = JSON.stringify(id);
    t.is(
      accepts(() => {
        validatePeerConfig({ ...good, peerId: id }, "config.json");
      }),
      isNodeId(id),
      `config ${label}`,
    );
    const message = {
      type: MessageType.Heartbeat,
      from: id,
      to: "1",
      term: 1,
      logTerm: 0,
      index: 0,
      commit: 0,
      reject: false,
      rejectHint: 0,
      rejectHintTerm: 0,
      context: new Uint8Array(0),
      entries: [],
      snapshot: null,
    };
    t.is(
      accepts(() => validateMessage(message) as unknown),
      isNodeId(id),
      `raft message ${label}`,
    );
  }
});
