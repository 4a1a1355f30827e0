/**
 * The simulator CLI (`npm run sim -- ...`):
 *   --seed N                 replay one seed exactly (prints its trace hash; --trace prints every event)
 *   --seeds K [--start S]    run seeds S..S+K-1 with progress output
 *   --profile NAME           mixed (default) | calm | lossy | partition | crash | membership | chaos |
 *                            storage | hunt | all (seed s runs CI_PROFILES[s % 4]: mixed, membership,
 *                            chaos, storage)
 *   --bug NAME               run a deliberately broken core (planted-bugs.ts: PLANTED_BUGS)
 *   --time-limit-s T         stop a --seeds run after T seconds (reports how many ran)
 *   --help                   the flags above
 * Ends with a summary and one JSON line; exits 1 if any seed violated a checker.
 */
import { PLANTED_BUGS } from "./planted-bugs.js";
import { CI_PROFILES } from "./profiles.js";
import { runSeed, type SimResult } from "./simulator.js";

const BUGS = PLANTED_BUGS;

const HELP = `usage: npm run sim -- (--seed N [--trace] | --seeds K [--start S] [--time-limit-s T]) [--profile P] [--bug B]
  --seed N            replay one seed exactly: prints its result and trace hash (--trace: every event)
  --seeds K           run K seeds, from --start S (default 1), with progress every 1,000 (or K/20)
  --time-limit-s T    stop a --seeds run after T seconds and report how many ran (default: no limit)
  --profile P         mixed (default), calm, lossy, partition, crash, membership, chaos, storage,
                      huntVotes, huntCommits, hunt, or all (seed s runs ${CI_PROFILES.join("/")}[s % 4])
  --bug B             plant a broken core: ${PLANTED_BUGS.join(", ")}
Ends with a summary line and one JSON line (requested, ran, passed, failed seeds, linearizabilityUnknown);
exits 1 if any seed failed a checker. The long offline run is described in docs/testing.md.
`;

function parse(argv: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--help" || a === "-h") {
      process.stdout.write(HELP);
      process.exit(0);
    }
    if (!a.startsWith("--")) usage(`unexpected argument ${a}`);
    const name = a.slice(2);
    if (name === "trace") out.set(name, "1");
    else {
      const v = argv[++i];
      if (v === undefined) usage(`--${name} needs a value`);
      out.set(name, v);
    }
  }
  return out;
}

function usage(why: string): never {
  process.stderr.write(`sim: ${why}\n${HELP}`);
  process.exit(2);
}

function int(v: string | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) usage(`--${name} must be a non-negative integer`);
  return n;
}

// `npm run sim ... | head` closes stdout early: stop quietly instead of crashing on EPIPE.
process.stdout.on("error", () => process.exit(process.exitCode ?? 0));

const args = parse(process.argv.slice(2));
const profile = args.get("profile") ?? "mixed";
const bugName = args.get("bug");
if (bugName !== undefined && !(BUGS as readonly string[]).includes(bugName))
  usage(`--bug must be one of ${BUGS.join(", ")}`);
const bugs = bugName === undefined ? undefined : { [bugName]: true };
const started = Date.now();
const profileOf = (seed: number): string =>
  profile === "all" ? CI_PROFILES[seed % CI_PROFILES.length]! : profile;

if (args.has("seed")) {
  const seed = int(args.get("seed"), "seed", 0);
  const r = await runSeed({
    seed,
    profile: profileOf(seed),
    keepTrace: args.has("trace"),
    ...(bugs ? { bugs } : {}),
  });
  if (r.trace) for (const line of r.trace) process.stdout.write(`${line}\n`);
  report([r], 1);
} else {
  const count = int(args.get("seeds"), "seeds", 100);
  const start = int(args.get("start"), "start", 1);
  const limitMs = int(args.get("time-limit-s"), "time-limit-s", 0) * 1000;
  const results: SimResult[] = [];
  for (let s = start; s < start + count; s++) {
    const r = await runSeed({ seed: s, profile: profileOf(s), ...(bugs ? { bugs } : {}) });
    results.push(r);
    if (!r.ok)
      process.stdout.write(
        `seed ${s} [${r.profile}] FAILED ${r.violation!.checker}: ${r.violation!.detail}\n`,
      );
    if (results.length % Math.max(100, Math.min(1000, Math.floor(count / 20))) === 0) {
      const bad = results.filter((x) => !x.ok).length;
      process.stdout.write(
        `… ${results.length}/${count} seeds, ${bad} failed, ${((Date.now() - started) / 1000).toFixed(0)} s\n`,
      );
    }
    if (limitMs > 0 && Date.now() - started > limitMs) {
      process.stdout.write(`time limit reached after ${results.length} seeds\n`);
      break;
    }
  }
  report(results, count);
}

function report(results: SimResult[], requested: number): void {
  const failed = results.filter((r) => !r.ok);
  const byProfile: Record<string, number> = {};
  for (const r of results) byProfile[r.profile] = (byProfile[r.profile] ?? 0) + 1;
  const sum = (f: (r: SimResult) => number): number => results.reduce((a, r) => a + f(r), 0);
  const seconds = (Date.now() - started) / 1000;
  if (results.length === 1) {
    const r = results[0]!;
    process.stdout.write(
      `seed ${r.seed} [${r.profile}] ${r.ok ? "ok" : `FAILED ${r.violation!.checker}: ${r.violation!.detail}`}; ` +
        `trace ${r.traceHash}; ${r.ticks} ticks; ${JSON.stringify(r.stats)}\n`,
    );
  } else {
    process.stdout.write(
      `${results.length - failed.length}/${results.length} seeds passed (${failed.length} failed) in ${seconds.toFixed(1)} s; ` +
        `writes acked ${sum((r) => r.stats.writesAcked)}, reads ${sum((r) => r.stats.readsDone)}, ` +
        `crashes ${sum((r) => r.stats.crashes)}, conf changes ${sum((r) => r.stats.confChanges)}, ` +
        `storage faults ${sum((r) => r.stats.storageFaults)}, corruptions detected ${sum((r) => r.stats.corruptionsDetected)}, ` +
        `unsynced writes lost ${sum((r) => r.stats.unsyncedLost)}, pauses ${sum((r) => r.stats.pauses)}, ` +
        `linearizability search bound hit in ${results.filter((r) => r.stats.linearizability === "unknown").length}\n`,
    );
  }
  process.stdout.write(
    `${JSON.stringify({
      requested,
      ran: results.length,
      passed: results.length - failed.length,
      failed: failed.map((r) => ({ seed: r.seed, profile: r.profile, checker: r.violation!.checker })),
      profile,
      bug: bugName ?? null,
      byProfile,
      linearizabilityUnknown: results.filter((r) => r.stats.linearizability === "unknown").length,
      seconds,
      ...(results.length === 1 ? { traceHash: results[0]!.traceHash } : {}),
    })}\n`,
  );
  process.exitCode = failed.length > 0 ? 1 : 0;
}
