/**
 * The peer's TLS policy (issue 8 item 6) against a real peer process, seen
 * by `openssl s_client` (an external client nobody on the project wrote):
 * offering any single TLS 1.2 suite OpenSSL knows, only ECDHE with AES-GCM
 * or ChaCha20-Poly1305 completes a handshake (CBC, SHA-1, CCM(8), ARIA,
 * Camellia, static RSA and DHE are refused); TLS 1.3 succeeds; TLS 1.1 and
 * 1.0 are refused. The lockbox client speaks the same policy (every other
 * e2e test connects through it).
 */
import test from "ava";
import { spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";

import { TLS12_SUITES } from "../../src/net/tls-policy.js";
import { spawnPeer } from "../helpers/peer-process.js";

const CONCURRENCY = 4;

test("openssl s_client: only ECDHE-AEAD TLS 1.2 suites and TLS 1.3 complete a handshake", async (t) => {
  const peer = await spawnPeer();
  t.teardown(() => peer.teardown());
  const listed = await run("openssl", ["ciphers", "-tls1_2", "-s", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"]);
  const suites = listed.stdout
    .trim()
    .split(":")
    .filter((s) => s !== "" && !s.startsWith("TLS_"));
  t.true(suites.length > 40, `openssl offers ${suites.length} TLS 1.2 suites`);

  const peerCert = readFileSync(join(peer.dir, "peer.crt"), "utf8");
  const keyType = new X509Certificate(peerCert).publicKey.asymmetricKeyType;
  const auth = keyType === "ec" ? "ECDSA" : "RSA";
  const expected = new Set(TLS12_SUITES.filter((s) => s.startsWith(`ECDHE-${auth}-`)));

  const accepted: string[] = [];
  const queue = [...suites];
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let s = queue.shift(); s !== undefined; s = queue.shift()) {
        if (await handshake(peer.address, ["-tls1_2", "-cipher", `${s}:@SECLEVEL=0`])) accepted.push(s);
      }
    }),
  );
  t.log(`TLS 1.2 suites accepted: ${accepted.sort().join(", ")} (of ${suites.length} offered one at a time)`);
  t.deepEqual(accepted.sort(), [...expected].sort());
  t.true(
    accepted.some((s) => s.includes("AES128-GCM")) && accepted.some((s) => s.includes("CHACHA20")),
    "ECDHE-AES-GCM and ECDHE-CHACHA20-POLY1305 succeed",
  );

  for (const suite of ["TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"]) {
    t.true(await handshake(peer.address, ["-tls1_3", "-ciphersuites", suite]), `TLS 1.3 ${suite}`);
  }
  for (const old of ["-tls1_1", "-tls1"]) {
    t.false(await handshake(peer.address, [old, "-cipher", "ALL:@SECLEVEL=0"]), `${old} is refused`);
  }
});

/** True when s_client completes a handshake with these options (offering h2, as gRPC clients do). */
async function handshake(address: string, args: string[]): Promise<boolean> {
  const r = await run("openssl", [
    "s_client",
    "-connect",
    address,
    "-servername",
    "localhost",
    "-alpn",
    "h2",
    "-brief",
    ...args,
  ]);
  return r.code === 0 && /CONNECTION ESTABLISHED/.test(r.stdout + r.stderr);
}

function run(cmd: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
