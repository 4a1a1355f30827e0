/**
 * `lockbox tpm info|ek|quote|verify` end to end: the built CLI as a child
 * process against a real swtpm.
 */
import test from "ava";
import { execFile } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type SwtpmFixture, startProvisionedSwtpm } from "./swtpm-fixture.js";

const CLI = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function lockbox(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { timeout: 30_000, killSignal: "SIGKILL" },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === "number" ? err.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

function tpmFlag(f: SwtpmFixture): string[] {
  return ["--tpm", `swtpm:127.0.0.1:${f.swtpm.port}`];
}

test("tpm info --json reports the manufacturer and the active PCR banks", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  const r = await lockbox(["tpm", "info", ...tpmFlag(f), "--json"]);
  t.is(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout) as {
    manufacturer: string;
    activePcrBanks: string[];
    firmwareVersion: string;
  };
  t.is(info.manufacturer, "IBM");
  t.deepEqual(info.activePcrBanks, ["sha256"]);
  t.regex(info.firmwareVersion, /^[0-9a-f]{8}\.[0-9a-f]{8}$/);
});

test("tpm ek --json prints the NV certificate and verifies its chain with --ca; only the root fails naming no-issuer", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  const { root, intermediate } = f.provisioned.caCertPaths;
  const ok = await lockbox(["tpm", "ek", ...tpmFlag(f), "--ca", root, "--ca", intermediate, "--json"]);
  t.is(ok.code, 0, ok.stderr);
  const ek = JSON.parse(ok.stdout) as {
    certificatePem: string;
    ekName: string;
    chain: { verified: boolean };
  };
  t.true(ek.chain.verified);
  t.regex(ek.ekName, /^000b[0-9a-f]{64}$/);
  const der = await fs.readFile(f.provisioned.ekCertPaths.rsa);
  t.true(
    ek.certificatePem.includes(der.toString("base64").slice(0, 60)),
    "the PEM holds swtpm_setup's certificate",
  );

  const bad = await lockbox(["tpm", "ek", ...tpmFlag(f), "--ca", root, "--json"]);
  t.is(bad.code, 1);
  t.like(JSON.parse(bad.stdout), { chain: { verified: false, errorCode: "no-issuer" } });
});

test("tpm quote then tpm verify: accepted with its nonce and policy; wrong nonce, unapproved PCR, replay, a short nonce and an empty policy are refused by code", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  const file = (name: string) => path.join(f.workDir, name);
  const NONCE = "a1b2c3d4".repeat(4);
  const quoteWith = async (nonce: string) => {
    const r = await lockbox([
      "tpm",
      "quote",
      ...tpmFlag(f),
      "--nonce",
      nonce,
      "--pcrs",
      "sha256:0,7",
      "--json",
    ]);
    t.is(r.code, 0, r.stderr);
    return r.stdout;
  };
  const q1 = await quoteWith(NONCE);
  const q2 = await quoteWith(NONCE);
  const short = await quoteWith("a1b2c3d4");
  const quote = JSON.parse(q1) as {
    akPublic: string;
    akName: string;
    pcrs: { sha256: Record<string, string> };
  };
  t.deepEqual(Object.keys(quote.pcrs.sha256), ["0", "7"]);
  await fs.writeFile(file("q1.json"), q1);
  await fs.writeFile(file("q2.json"), q2);
  await fs.writeFile(file("short.json"), short);
  await fs.writeFile(file("ak.hex"), quote.akPublic + "\n");
  const pins = { hashAlg: "sha256", signatureScheme: "ecdsa", firmwareVersionMin: "00000000.00000000" };
  const other7 = "00".repeat(31) + "01";
  await fs.writeFile(file("policy.json"), JSON.stringify({ pcrs: quote.pcrs, ...pins }));
  await fs.writeFile(
    file("other-policy.json"),
    JSON.stringify({ pcrs: { sha256: { "7": other7 } }, ...pins }),
  );
  await fs.writeFile(file("empty-policy.json"), JSON.stringify({ pcrs: {}, ...pins }));
  const verify = (quoteFile: string, nonce: string, policy: string, extra: string[] = []) =>
    lockbox([
      "tpm",
      "verify",
      "--quote",
      file(quoteFile),
      "--ak-public",
      file("ak.hex"),
      "--nonce",
      nonce,
      "--policy",
      file(policy),
      ...extra,
    ]);

  const ok = await verify("q1.json", NONCE, "policy.json", ["--json"]);
  t.is(ok.code, 0, ok.stdout + ok.stderr);
  t.like(JSON.parse(ok.stdout), { ok: true, akName: quote.akName, clock: { safe: true } });

  interface Refusal {
    failures: { check: string; code: string; details: Record<string, unknown>; recoverable: boolean }[];
    notRun: string[];
  }
  const refusal = (r: Run) => {
    t.is(r.code, 1, r.stdout + r.stderr);
    return JSON.parse(r.stdout) as Refusal;
  };
  const codes = (r: Run) => refusal(r).failures.map((x) => x.code);
  t.deepEqual(codes(await verify("q1.json", "ff".repeat(16), "policy.json", ["--json"])), ["nonce-mismatch"]);
  const otherPolicy = refusal(await verify("q1.json", NONCE, "other-policy.json", ["--json"]));
  t.deepEqual(otherPolicy.failures, [
    {
      check: "pcr-policy",
      code: "policy-pcr-value-not-approved",
      details: { bank: "sha256", pcr: 7, expected: [other7], actual: quote.pcrs.sha256["7"] },
      recoverable: false,
    },
  ]);
  t.deepEqual(
    codes(await verify("q1.json", NONCE, "policy.json", ["--json", "--previous", file("q2.json")])),
    ["clock-not-advanced"],
  );
  t.deepEqual(codes(await verify("short.json", "a1b2c3d4", "policy.json", ["--json"])), ["nonce-too-short"]);
  const empty = refusal(await verify("q1.json", NONCE, "empty-policy.json", ["--json"]));
  t.deepEqual(
    empty.failures.map((x) => x.code),
    ["policy-empty"],
  );
  t.deepEqual(empty.notRun, [
    "signature",
    "attest",
    "nonce",
    "pcr-digest",
    "pcr-policy",
    "clock",
    "firmware",
  ]);

  // Without --json: one line per failure with its check, code and details; then what did not run.
  const text = await verify("q1.json", NONCE, "other-policy.json");
  t.is(text.code, 1);
  t.regex(
    text.stdout,
    new RegExp(
      `^ +pcr-policy +policy-pcr-value-not-approved +bank=sha256 pcr=7 expected=${other7} actual=[0-9a-f]{64}$`,
      "m",
    ),
  );
  const emptyText = await verify("q1.json", NONCE, "empty-policy.json");
  t.regex(emptyText.stdout, /^ +policy +policy-empty +field=pcrs problem="approves no PCR"$/m);
  t.regex(emptyText.stdout, /^not run: signature, attest, nonce, pcr-digest, pcr-policy, clock, firmware$/m);
  t.deepEqual(await f.leftoverHandles(), [], "the CLI flushed its AK");
});

test("tpm usage: --help on every subcommand exits 0; bad flags exit 2 naming the problem; an unreachable TPM exits 1", async (t) => {
  for (const sub of ["info", "ek", "quote", "verify"]) {
    const r = await lockbox(["tpm", sub, "--help"]);
    t.is(r.code, 0, sub);
    t.regex(r.stdout, new RegExp(`usage: lockbox tpm ${sub}`, "i"));
  }
  const cases: [string[], RegExp][] = [
    [["tpm", "quote", "--tpm", "bogus", "--nonce", "00"], /--tpm must be/],
    [["tpm", "quote", "--tpm", "swtpm:127.0.0.1:1"], /required option .--nonce/],
    [["tpm", "quote", "--nonce", "00", "--pcrs", "sha256:0,99"], /PCR index '99'/],
    [["tpm", "frobnicate"], /unknown command 'frobnicate'/],
  ];
  for (const [args, message] of cases) {
    const r = await lockbox(args);
    t.is(r.code, 2, args.join(" "));
    t.regex(r.stderr, message);
  }
  const down = await lockbox(["tpm", "info", "--tpm", "swtpm:127.0.0.1:1"]);
  t.is(down.code, 1);
  t.regex(down.stderr, /cannot connect to TPM/);
});
