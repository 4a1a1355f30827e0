import test from "ava";
import { validatePeerConfig, newPeerConfig } from "../../src/config/peer-config.js";
import { connectionSettings, parseCommandArgs, CONNECTION_OPTIONS } from "../../src/cli/client-options.js";
import { formatHostPort, isHostPort, parseHostPort } from "../../src/net/host-port.js";

const GOOD: [string, string, number][] = [
  ["127.0.0.1:7443", "127.0.0.1", 7443],
  ["localhost:1", "localhost", 1],
  ["peer-1.zone_a.example:65535", "peer-1.zone_a.example", 65535],
  ["[::1]:7443", "::1", 7443],
  ["[fe80::1:2]:80", "fe80::1:2", 80],
  ["[::ffff:10.0.0.1]:443", "::ffff:10.0.0.1", 443],
];

const BAD = [
  "",
  "7443",
  "host",
  "host:",
  ":7443",
  "host:65536",
  "host:99999",
  "host:-1",
  "host:+80",
  "host:80 ",
  " host:80",
  "ho st:80",
  "host:80\n",
  "::1:7443",
  "[::1]",
  "[not-v6]:80",
  "[1.2.3.4]:80",
  "a..b:80",
  ".a:80",
  "-a:80",
  "a-:80",
  "x".repeat(64) + ":80",
  "a:b:80",
  "host:0x50",
];

test("HOST:PORT parses DNS names, IPv4 and bracketed IPv6, and formats back to the same text", (t) => {
  for (const [text, host, port] of GOOD) {
    t.deepEqual(parseHostPort(text), { host, port }, text);
    t.is(formatHostPort({ host, port }), text);
  }
});

test("malformed HOST:PORT is refused, never split some other way", (t) => {
  for (const text of BAD) t.is(parseHostPort(text), undefined, JSON.stringify(text));
});

test("port 0 is a listen address only: refused unless the caller allows it", (t) => {
  t.is(parseHostPort("127.0.0.1:0"), undefined);
  t.deepEqual(parseHostPort("127.0.0.1:0", { portZero: true }), { host: "127.0.0.1", port: 0 });
  t.deepEqual(parseHostPort("[::]:0", { portZero: true }), { host: "::", port: 0 });
});

// The callers must not keep rules of their own: the config's listen and the CLI's endpoints
// accept exactly what the shared parser accepts.
test("the peer config and the CLI's --endpoint agree with the shared parser on every sample", (t) => {
  const good = newPeerConfig({ peerId: "peer-1", listen: "127.0.0.1:7443" });
  for (const text of [...GOOD.map(([s]) => s), ...BAD, "127.0.0.1:0"]) {
    const configAccepts = ((): boolean => {
      try {
        validatePeerConfig({ ...good, listen: text }, "config.json");
        return true;
      } catch {
        return false;
      }
    })();
    t.is(configAccepts, isHostPort(text, { portZero: true }), `config listen ${JSON.stringify(text)}`);
    const cliAccepts = ((): boolean => {
      const args = parseCommandArgs(
        [`--endpoint=${text}`, "--ca", "c", "--cert", "c", "--key", "k"],
        CONNECTION_OPTIONS,
        0,
      );
      try {
        connectionSettings(args, {});
        return true;
      } catch {
        return false;
      }
    })();
    t.is(cliAccepts, isHostPort(text), `--endpoint ${JSON.stringify(text)}`);
  }
});
