import test from "ava";
import { newPeerConfig, PEER_ADDRESSES_MAX, validatePeerConfig } from "../../src/config/peer-config.js";
import { isLockboxError } from "../../src/errors.js";
import { peerDial, peerDialAddress } from "../../src/net/peer-dial.js";

test("without an override a peer is dialled at its member address, with no extra channel options", (t) => {
  t.deepEqual(peerDial(undefined, "peer-2", "10.0.0.2:7443"), {
    target: "10.0.0.2:7443",
    channelOptions: {},
  });
  t.deepEqual(peerDial({ "peer-3": "127.0.0.1:9" }, "peer-2", "10.0.0.2:7443"), {
    target: "10.0.0.2:7443",
    channelOptions: {},
  });
});

test("an override moves the dial and keeps the TLS name check on the member address's host", (t) => {
  t.deepEqual(peerDial({ "peer-2": "127.0.0.1:9000" }, "peer-2", "peer-2.example:7443"), {
    target: "127.0.0.1:9000",
    channelOptions: { "grpc.ssl_target_name_override": "peer-2.example" },
  });
  t.deepEqual(peerDial({ "peer-2": "127.0.0.1:9000" }, "peer-2", "[::1]:7443").channelOptions, {
    "grpc.ssl_target_name_override": "::1",
  });
  t.is(peerDialAddress({ "peer-2": "127.0.0.1:9000" }, "peer-2", "10.0.0.2:7443"), "127.0.0.1:9000");
});

test("only a peer's own override applies, never an inherited property", (t) => {
  t.is(peerDialAddress({}, "constructor", "10.0.0.2:7443"), "10.0.0.2:7443");
  t.is(peerDialAddress({}, "toString", "10.0.0.2:7443"), "10.0.0.2:7443");
});

const good = newPeerConfig({ peerId: "peer-1", listen: "127.0.0.1:0" });

test("config.json peerDialOverrides is kept when valid and optional", (t) => {
  t.is(validatePeerConfig({ ...good }, "config.json").peerDialOverrides, undefined);
  const overrides = { "peer-2": "127.0.0.1:4001", "peer-3": "[::1]:4002", "peer-4": "nat.example:7443" };
  t.deepEqual(
    validatePeerConfig({ ...good, peerDialOverrides: overrides }, "config.json").peerDialOverrides,
    overrides,
  );
});

test("a bad peerDialOverrides is refused naming the field", (t) => {
  const tooMany = Object.fromEntries(
    Array.from({ length: PEER_ADDRESSES_MAX + 1 }, (_, i) => [`peer-${i}`, `127.0.0.1:${4000 + i}`]),
  );
  const cases: [unknown, string][] = [
    ["127.0.0.1:4001", "peerDialOverrides"],
    [["127.0.0.1:4001"], "peerDialOverrides"],
    [null, "peerDialOverrides"],
    [{ "peer-2": "127.0.0.1" }, "peerDialOverrides.peer-2"],
    [{ "peer-2": "127.0.0.1:0" }, "peerDialOverrides.peer-2"],
    [{ "peer-2": 4001 }, "peerDialOverrides.peer-2"],
    [{ "-bad id": "127.0.0.1:4001" }, "peerDialOverrides.-bad id"],
    [tooMany, "peerDialOverrides"],
  ];
  for (const [value, field] of cases) {
    const e = t.throws(() => validatePeerConfig({ ...good, peerDialOverrides: value }, "config.json"));
    t.true(isLockboxError(e, "FAILED_PRECONDITION"), String(e));
    t.true(e!.message.startsWith(`config.json: ${field} `), `${JSON.stringify(value)}: ${e!.message}`);
  }
});
