/**
 * `npm run bench -- tpm [--count 200] [--duration-ms 10000]`
 *
 * On a freshly provisioned swtpm (TCP on 127.0.0.1, project-local CA in a
 * temp dir): the time of a quote (TPM2_Quote with an ECC AK, loaded once),
 * of verifyQuote (pure node:crypto), of seal (SRK + Create under PolicyPCR)
 * and of unseal (SRK, Load, salted policy session, PolicyPCR, Unseal with
 * response encryption, flushes). Each is run at most --count times and for
 * at most --duration-ms; prints median and p90 per operation, then one JSON
 * line. The swtpm is stopped and its directory removed, also on failure.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { Tpm } from "../../tpm/client/tpm.js";
import { createAk } from "../../tpm/keys/ak.js";
import { encode } from "../../tpm/marshal/writer.js";
import { quote } from "../../tpm/quote.js";
import { sealSecret, unsealSecret } from "../../tpm/seal/seal.js";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { TpmlPcrSelection } from "../../tpm/spec/pcr.js";
import { provisionSwtpm, startSwtpm } from "../../tpm/swtpm/index.js";
import { TcpTransport } from "../../tpm/transport/tcp-transport.js";
import { quotePolicyForValues } from "../../tpm/verify/quote-policy.js";
import { verifyQuote } from "../../tpm/verify/quote-verifier.js";

interface Row {
  operation: string;
  runs: number;
  medianMs: number;
  p90Ms: number;
}

function parse(argv: string[]): { count: number; durationMs: number } {
  const opts = { count: 200, durationMs: 10_000 };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--count") opts.count = Number(value);
    else if (flag === "--duration-ms") opts.durationMs = Number(value);
    else throw new Error(`unknown flag ${flag} (expected --count, --duration-ms)`);
  }
  if (!Number.isSafeInteger(opts.count) || opts.count < 1 || opts.count > 100_000) {
    throw new Error("--count must be an integer in 1..100000");
  }
  if (!(opts.durationMs > 0)) throw new Error("--duration-ms must be > 0");
  return opts;
}

/** Runs `op` sequentially, at most `count` times and until `durationMs` has passed (at least once). */
async function time(operation: string, count: number, durationMs: number, op: () => unknown): Promise<Row> {
  const samples: number[] = [];
  const deadline = performance.now() + durationMs;
  for (let i = 0; i < count && (i === 0 || performance.now() < deadline); i++) {
    const start = performance.now();
    await op();
    samples.push(performance.now() - start);
  }
  samples.sort((a, b) => a - b);
  const at = (p: number) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))]!;
  return { operation, runs: samples.length, medianMs: round(at(0.5)), p90Ms: round(at(0.9)) };
}

const round = (ms: number): number => Math.round(ms * 1000) / 1000;

export async function main(argv: string[]): Promise<void> {
  const opts = parse(argv);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "lockbox-tpm-bench-"));
  let stop: (() => Promise<void>) | undefined;
  let tpm: Tpm | undefined;
  try {
    const provisioned = await provisionSwtpm({
      stateDir: path.join(dir, "state"),
      caDir: path.join(dir, "ca"),
    });
    const swtpm = await startSwtpm({ stateDir: provisioned.stateDir });
    stop = () => swtpm.stop();
    tpm = new Tpm(await TcpTransport.connect({ host: swtpm.host, port: swtpm.port }));
    const t = tpm;
    const selection = TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [0, 1, 2, 3, 7]);
    const values = (await t.pcrRead(selection)).values.map((v) => ({
      hashAlg: v.hash,
      pcr: v.pcr,
      value: v.digest,
    }));
    const policy = quotePolicyForValues(values, {
      hashAlg: "sha256",
      signatureScheme: "ecdsa",
      firmwareVersionMin: "00000000.00000000",
    });
    const nonce = randomBytes(32);
    const rows: Row[] = [];

    const ak = await createAk(t);
    try {
      rows.push(
        await time("quote", opts.count, opts.durationMs, () =>
          quote(t, ak, { pcrs: selection, extraData: nonce }),
        ),
      );
      const q = await quote(t, ak, { pcrs: selection, extraData: nonce });
      const input = {
        attestBytes: q.attestBytes,
        signature: encode((w) => q.signature.marshal(w)),
        akPublic: ak.publicArea,
        expectedNonce: nonce,
        pcrValues: values,
        policy,
      };
      if (!verifyQuote(input).ok) throw new Error("bench quote does not verify");
      rows.push(await time("verifyQuote", opts.count, opts.durationMs, () => verifyQuote(input)));
    } finally {
      await t.flushContext(ak.handle);
    }

    const secret = randomBytes(32);
    rows.push(
      await time("seal", opts.count, opts.durationMs, () => sealSecret(t, { secret, pcrs: selection })),
    );
    const blob = await sealSecret(t, { secret, pcrs: selection });
    rows.push(await time("unseal", opts.count, opts.durationMs, () => unsealSecret(t, blob)));

    process.stdout.write("operation     runs   median ms   p90 ms\n");
    for (const r of rows) {
      process.stdout.write(
        `${r.operation.padEnd(12)} ${String(r.runs).padStart(5)} ${r.medianMs.toFixed(3).padStart(11)} ${r.p90Ms.toFixed(3).padStart(8)}\n`,
      );
    }
    process.stdout.write(JSON.stringify({ bench: "tpm", transport: "swtpm-tcp", rows }) + "\n");
  } finally {
    await tpm?.close().catch(() => undefined);
    await stop?.();
    await fs.rm(dir, { recursive: true, force: true });
  }
}
