/**
 * The control-state CLI against a real peer process: `lockbox policy add|list|show|remove`,
 * `lockbox peer enroll|list|drain|remove` (enroll prints the CA fingerprint and a one-time join token,
 * of which the control state keeps only a hash), `lockbox identity list|revoke`.
 */
import test from "ava";
import { createHash, generateKeyPairSync, X509Certificate } from "node:crypto";
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { runCli } from "../helpers/cli-process.js";
import { spawnPeer } from "../helpers/peer-process.js";

const POLICY = {
  pcrs: { sha256: { "7": "11".repeat(32) } },
  hashAlg: "sha256",
  signatureScheme: "ecdsa",
  firmwareVersionMin: "00000000.00000000",
};

test("policy, peer and identity commands change and show the control state", async (t) => {
  const peer = await spawnPeer({ peerId: "peer-1" });
  t.teardown(() => peer.teardown());
  const flags = peer.cliFlags();
  const cli = async (...args: string[]): Promise<string> => {
    const r = await runCli([...args, ...flags]);
    t.is(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    return r.text;
  };
  const policyFile = join(peer.dir, "policy.json");
  await fs.writeFile(policyFile, JSON.stringify(POLICY));
  // The first call may race the leader's founding round; the peer waits for it.
  await cli("policy", "add", "prod", "--file", policyFile);
  t.deepEqual(JSON.parse(await cli("policy", "show", "prod", "--json")).policy, POLICY);

  const ekFile = join(peer.dir, "ek.pem");
  const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  await fs.writeFile(ekFile, publicKey.export({ type: "spki", format: "pem" }));
  const enrolled = JSON.parse(
    await cli(
      "peer",
      "enroll",
      "--peer-id",
      "peer-2",
      "--address",
      "127.0.0.1:7999",
      "--zone",
      "z2",
      "--policy",
      "prod",
      "--ek-public-key",
      ekFile,
      "--json",
    ),
  ) as { joinToken: string; caFingerprintSha256: string; peer: { state: string } };
  const ca = new X509Certificate(await fs.readFile(join(peer.dir, "ca.crt")));
  t.is(enrolled.caFingerprintSha256, createHash("sha256").update(ca.raw).digest("hex"));
  t.regex(enrolled.joinToken, /^[A-Za-z0-9_-]{43}$/);
  t.is(enrolled.peer.state, "enrolled");
  const text = await cli("peer", "list");
  t.regex(text, /peer-1\s+active\s+voter/);
  t.regex(text, /peer-2\s+enrolled\s+none\s+z2/);
  t.false(text.includes(enrolled.joinToken), "the token is shown once, never listed");

  // A policy in use cannot go; an unknown EK format is refused naming the flag's field.
  const inUse = await runCli(["policy", "remove", "prod", ...flags]);
  t.not(inUse.code, 0);
  t.regex(inUse.stderr, /peer-2 uses policy prod/);
  const drain = await runCli(["peer", "drain", "--peer-id", "peer-2", ...flags]);
  t.not(drain.code, 0, "only an active peer drains");
  t.regex(
    await cli("peer", "remove", "--peer-id", "peer-2", "--reason", "decommissioned"),
    /removed peer peer-2/,
  );
  await cli("policy", "remove", "prod");
  t.deepEqual(JSON.parse(await cli("policy", "list", "--json")), []);

  const svc = await peer.issueIdentity("svc-cli", "service", ["p1"]);
  const listed = JSON.parse(await cli("identity", "list", "--json")) as { name: string; revoked: boolean }[];
  t.like(
    listed.find((i) => i.name === "svc-cli"),
    { revoked: false },
  );
  t.regex(
    await cli("identity", "revoke", "--name", "svc-cli", "--reason", "test"),
    /revoked identity 'svc-cli'/,
  );
  const after = JSON.parse(await cli("identity", "list", "--json")) as { name: string; revoked: boolean }[];
  t.like(
    after.find((i) => i.name === "svc-cli"),
    { revoked: true },
  );
  const refused = await runCli(["status", ...peer.cliFlags(svc)]);
  t.not(refused.code, 0);
  t.regex(refused.stderr, /UNAUTHENTICATED|revoked/);
});
