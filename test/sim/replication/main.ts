/**
 * The replication simulator CLI (`npm run sim:replication -- ...`), for long offline runs:
 *   --seed N                 replay one seed exactly (--trace prints its events)
 *   --seeds K [--start S]    run seeds S..S+K-1 with progress output
 *   --bug NAME               run a deliberately broken variant (planted-bugs.ts: PLANTED_REPLICATION_BUGS)
 *   --time-limit-s T         stop a --seeds run after T seconds (reports how many ran)
 * Ends with a summary and one JSON line; exits 1 if any seed violated a checker.
 */
import { PLANTED_REPLICATION_BUGS } from "./planted-bugs.js";
import { runReplicationSeed, type SimResult } from "./replication-simulator.js";

function usage(why: string): never {
  process.stderr.write(
    `sim:replication: ${why}\nusage: npm run sim:replication -- (--seed N [--trace] | --seeds K [--start S] [--time-limit-s T]) [--bug B]\n`,
  );
  process.exit(2);
}

const args = new Map<string, string>();
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i]!;
  if (!a.startsWith("--")) usage(`unexpected argument ${a}`);
  if (a === "--trace") args.set("trace", "1");
  else {
    const v = argv[++i];
    if (v === undefined) usage(`${a} needs a value`);
    args.set(a.slice(2), v);
  }
}
const int = (name: string, dflt: number): number => {
  const v = args.get(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) usage(`--${name} must be a non-negative integer`);
  return n;
};
process.stdout.on("error", () => process.exit(process.exitCode ?? 0));

const bugName = args.get("bug");
if (bugName !== undefined && !(PLANTED_REPLICATION_BUGS as readonly string[]).includes(bugName))
  usage(`--bug must be one of ${PLANTED_REPLICATION_BUGS.join(", ")}`);
const bugs = bugName === undefined ? undefined : { [bugName]: true };
const started = Date.now();

const describe = (r: SimResult): string =>
  `seed ${r.seed} ${r.ok ? "ok" : `VIOLATION ${r.violation!.checker}: ${r.violation!.detail}`}\n  plan: ${r.plan}\n  stats: ${JSON.stringify(r.stats)}`;

if (args.has("seed")) {
  const r = await runReplicationSeed({ seed: int("seed", 1), bugs, trace: args.has("trace") });
  if (args.has("trace")) for (const line of r.trace) process.stdout.write(`${line}\n`);
  process.stdout.write(`${describe(r)}\n`);
  process.stdout.write(
    `${JSON.stringify({ seeds: 1, violations: r.ok ? 0 : 1, ms: Date.now() - started })}\n`,
  );
  process.exitCode = r.ok ? 0 : 1;
} else {
  const start = int("start", 1);
  const count = int("seeds", 100);
  const limitMs = int("time-limit-s", 0) * 1000;
  let ran = 0;
  let violations = 0;
  let acked = 0;
  for (let seed = start; seed < start + count; seed++) {
    if (limitMs > 0 && Date.now() - started > limitMs) break;
    const r = await runReplicationSeed({ seed, bugs });
    ran++;
    acked += r.stats.createsAcked;
    if (!r.ok) {
      violations++;
      process.stdout.write(
        `${describe(r)}\n  replay: npm run sim:replication -- --seed ${seed}${bugName ? ` --bug ${bugName}` : ""} --trace\n`,
      );
    }
    if (ran % 100 === 0)
      process.stdout.write(`${ran} seeds, ${violations} violations, ${Date.now() - started} ms\n`);
  }
  process.stdout.write(
    `${ran} seeds from ${start}: ${violations} violations; creates acked ${acked}; ${Date.now() - started} ms\n`,
  );
  process.stdout.write(
    `${JSON.stringify({ seeds: ran, start, violations, createsAcked: acked, ms: Date.now() - started })}\n`,
  );
  process.exitCode = violations === 0 ? 0 : 1;
}
