/**
 * Mutation testing (`npm run mutate -- raft [options]`; not part of CI): enumerate every mutant of a
 * target's source, run its unit tests and then a short simulator seed batch against a seeded random
 * sample of them, one mutant at a time, and print the score with every survivor to study.
 *
 *   raft                     the target: cluster/raft/core, the tests in test/raft, seeds from test/sim
 *   --seed N                 sample seed (default 1); the same seed and source give the same sample
 *   --sample N               sample size (default 300); --all runs every mutant (hours)
 *   --mutant ID              run only the mutant with this id (repeatable); ids are printed by --list
 *   --list                   print every mutant with its id and exit
 *   --unit-only              skip the seed batch (a survivor of the unit tests alone is reported as such)
 *   --sim-seeds N            seeds per simulator profile (default 8; profiles mixed, membership, chaos)
 *   --json FILE              also write the full result as JSON
 *
 * How it runs: the compiled project (dist/, from `npm run build`) is copied into a temporary sandbox with
 * the target's TypeScript files transpiled one by one; a mutant is one text edit of one file, transpiled
 * and written over that file's JavaScript in the sandbox, then the unit tests (ava, one file at a time,
 * fail-fast) and the seed batch run with a timeout. Everything is sequential, so it uses one core.
 * A mutant is killed when a test fails, a seed violates a checker or crashes, or a run times out.
 */
import { spawn } from "node:child_process";
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  readFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { Prng } from "../sim/prng.js";
import { equivalentReason, staleEntries } from "./equivalent-mutants.js";
import { applyMutant, findMutants, type Mutant } from "./mutants.js";

interface Target {
  /** Folder whose *.ts files are mutated, relative to the repository root. */
  sourceDir: string;
  /** ava file patterns, relative to the root (compiled tests). */
  unitTests: string[];
  simProfiles: string[];
}

const TARGETS: Record<string, Target> = {
  raft: {
    sourceDir: "cluster/raft/core",
    unitTests: ["dist/test/raft/*.test.js"],
    simProfiles: ["mixed", "membership", "chaos"],
  },
};

type Outcome = "killed" | "timeout" | "survived" | "invalid";
interface Result {
  id: number;
  mutant: Mutant;
  outcome: Outcome;
  /** What killed it: "unit", "sim:<profile>", or for a survivor of --unit-only, nothing. */
  by: string | null;
  ms: number;
  detail?: string;
}

const root = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const args = parseArgs(process.argv.slice(2));
const target = TARGETS[args.target]!;

const sources = readdirSync(join(root, target.sourceDir))
  .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))
  .sort()
  .map((f) => {
    const file = `${target.sourceDir}/${f}`;
    return { file, text: readFileSync(join(root, file), "utf8") };
  });
const all: Mutant[] = sources.flatMap((s) => findMutants(s.file, s.text));
const candidates: { id: number; mutant: Mutant }[] = [];
const equivalents: { id: number; mutant: Mutant; reason: string }[] = [];
all.forEach((mutant, id) => {
  const reason = equivalentReason(mutant);
  if (reason === undefined) candidates.push({ id, mutant });
  else equivalents.push({ id, mutant, reason });
});

for (const s of staleEntries(all))
  process.stderr.write(`mutate: warning: stale entry, matches no mutant: ${s}\n`);

if (args.list) {
  // One write, awaited: process.exit() would cut a piped stdout short.
  const text = all.map((m, id) => `${id}\t${describe(m)}\n`).join("");
  await new Promise<void>((resolve) => process.stdout.write(text, () => resolve()));
  process.exit(0);
}

const chosen = pick();
const sampleNote =
  args.mutants.length > 0
    ? `mutants ${args.mutants.join(", ")}`
    : args.all
      ? `all ${candidates.length} mutants`
      : `a seeded random sample of ${chosen.length} of ${candidates.length} mutants (seed ${args.seed})`;
process.stdout.write(
  `mutate ${args.target}: ${all.length} mutants in ${sources.length} files of ${target.sourceDir}; ` +
    `${equivalents.length} listed as equivalent; running ${sampleNote}\n` +
    `each against ${target.unitTests.join(" ")}` +
    (args.unitOnly
      ? " (unit tests only)\n"
      : ` then ${args.simSeeds} seeds of each of ${target.simProfiles.join(", ")}\n`),
);

const sandbox = makeSandbox();
let current: ReturnType<typeof spawn> | null = null;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (current?.pid !== undefined) killGroup(current.pid);
    rmSync(sandbox, { recursive: true, force: true });
    process.exit(130);
  });
}

const started = Date.now();
const baseline = await runChecks("baseline");
if (baseline.outcome !== "survived") {
  process.stderr.write(
    `mutate: the unmutated code fails its own checks (${baseline.by}): ${baseline.detail}\n`,
  );
  rmSync(sandbox, { recursive: true, force: true });
  process.exit(2);
}
const unitTimeoutMs = Math.max(30_000, 4 * baseline.unitMs + 10_000);
const simTimeoutMs = Math.max(30_000, 4 * baseline.simMs + 10_000);
process.stdout.write(
  `baseline passes: unit tests ${(baseline.unitMs / 1000).toFixed(1)} s, seed batch ${(baseline.simMs / 1000).toFixed(1)} s; ` +
    `timeouts ${unitTimeoutMs / 1000} s and ${simTimeoutMs / 1000} s\n`,
);

const results: Result[] = [];
for (const [i, { id, mutant }] of chosen.entries()) {
  const t0 = Date.now();
  const source = sources.find((s) => s.file === mutant.file)!;
  const jsPath = jsFor(mutant.file);
  let r: Result;
  const js = transpile(mutant.file, applyMutant(source.text, mutant));
  if (js === null) {
    r = { id, mutant, outcome: "invalid", by: null, ms: 0, detail: "does not parse" };
  } else {
    writeFileSync(jsPath, js);
    const c = await runChecks(`${id}`, unitTimeoutMs, simTimeoutMs);
    writeFileSync(jsPath, transpile(mutant.file, source.text)!);
    r = {
      id,
      mutant,
      outcome: c.outcome,
      by: c.by,
      ms: Date.now() - t0,
      ...(c.detail ? { detail: c.detail } : {}),
    };
  }
  results.push(r);
  const done = i + 1;
  const etaS = (((Date.now() - started) / done) * (chosen.length - done)) / 1000;
  process.stdout.write(
    `[${done}/${chosen.length}] ${r.outcome.padEnd(8)} ${(r.by ?? "").padEnd(15)} ${(r.ms / 1000).toFixed(1).padStart(5)} s  #${id} ${describe(mutant)}` +
      `  (eta ${Math.round(etaS / 60)} min)\n`,
  );
}
rmSync(sandbox, { recursive: true, force: true });
summarise();

// ---------------------------------------------------------------- steps

function pick(): { id: number; mutant: Mutant }[] {
  if (args.mutants.length > 0) {
    return args.mutants.map((id) => {
      const mutant = all[id];
      if (mutant === undefined) usage(`no mutant ${id} (there are ${all.length})`);
      return { id, mutant };
    });
  }
  if (args.all || args.sample >= candidates.length) return candidates;
  // Shuffle every mutant with the project's seeded PRNG (Fisher-Yates) and take the first `sample` that
  // are not listed as equivalent: listing one more equivalent swaps one mutant, not the whole sample.
  const prng = new Prng(args.seed);
  const order = all.map((_, id) => id);
  for (let i = order.length - 1; i > 0; i--) {
    const j = prng.nextInt(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const wanted = new Set(candidates.map((c) => c.id));
  const ids = order.filter((id) => wanted.has(id)).slice(0, args.sample);
  return ids.sort((a, b) => a - b).map((id) => ({ id, mutant: all[id]! }));
}

/** dist/ copied to a temporary folder, with the target's files transpiled alone (as mutants will be). */
function makeSandbox(): string {
  const dir = mkdtempSync(join(tmpdir(), "lockbox-mutate-"));
  cpSync(join(root, "dist"), join(dir, "dist"), { recursive: true });
  symlinkSync(join(root, "node_modules"), join(dir, "node_modules"), "dir");
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as Record<string, unknown>;
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({
      name: "lockbox-mutate-sandbox",
      private: true,
      type: pkg.type,
      ava: { workerThreads: false },
    }),
  );
  for (const s of sources) {
    const js = transpile(s.file, s.text);
    if (js === null) throw new Error(`${s.file} does not transpile`);
    mkdirSync(dirname(jsFor(s.file, dir)), { recursive: true });
    writeFileSync(jsFor(s.file, dir), js);
    rmSync(`${jsFor(s.file, dir)}.map`, { force: true });
  }
  return dir;
}

function jsFor(file: string, dir = sandbox): string {
  return join(dir, "dist", file.replace(/\.ts$/, ".js"));
}

/** JavaScript for one file, or null if the (mutated) text has a syntax error. No type check: as Stryker. */
function transpile(file: string, text: string): string | null {
  const out = ts.transpileModule(text, {
    fileName: file,
    reportDiagnostics: true,
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ES2022, sourceMap: false },
  });
  return (out.diagnostics ?? []).some((d) => d.category === ts.DiagnosticCategory.Error)
    ? null
    : out.outputText;
}

async function runChecks(
  label: string,
  unitTimeoutMs = 600_000,
  simTimeoutMs = 600_000,
): Promise<{ outcome: Outcome; by: string | null; detail?: string; unitMs: number; simMs: number }> {
  const u0 = Date.now();
  const avaCli = join(root, "node_modules/ava/entrypoints/cli.mjs");
  const unit = await run(
    [avaCli, "--concurrency", "1", "--fail-fast", "--timeout", "60s", ...target.unitTests],
    unitTimeoutMs,
  );
  const unitMs = Date.now() - u0;
  if (unit.timedOut) return { outcome: "timeout", by: "unit", unitMs, simMs: 0 };
  if (unit.code !== 0)
    return { outcome: "killed", by: "unit", detail: firstFailure(unit.output), unitMs, simMs: 0 };
  if (args.unitOnly) return { outcome: "survived", by: null, unitMs, simMs: 0 };
  const s0 = Date.now();
  for (const profile of target.simProfiles) {
    const sim = await run(
      ["dist/test/sim/main.js", "--seeds", String(args.simSeeds), "--profile", profile],
      simTimeoutMs,
    );
    if (sim.timedOut) return { outcome: "timeout", by: `sim:${profile}`, unitMs, simMs: Date.now() - s0 };
    if (sim.code !== 0) {
      const failed = sim.output.split("\n").find((l) => l.includes("FAILED")) ?? sim.output.slice(-300);
      return {
        outcome: "killed",
        by: `sim:${profile}`,
        detail: failed.trim(),
        unitMs,
        simMs: Date.now() - s0,
      };
    }
  }
  void label;
  return { outcome: "survived", by: null, unitMs, simMs: Date.now() - s0 };
}

function run(
  argv: string[],
  timeoutMs: number,
): Promise<{ code: number | null; timedOut: boolean; output: string }> {
  return new Promise((resolve) => {
    // Its own process group, so a timeout also ends ava's worker processes.
    const child = spawn(process.execPath, argv, {
      cwd: sandbox,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    current = child;
    let output = "";
    const keep = (b: Buffer): void => {
      output = (output + b.toString()).slice(-20_000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid!);
    }, timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      current = null;
      resolve({ code, timedOut, output });
    });
  });
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // already gone
  }
}

function firstFailure(output: string): string {
  const line = output.split("\n").find((l) => /✘|failed|Error/.test(l));
  return (line ?? "").trim().slice(0, 200);
}

function describe(m: Mutant): string {
  const one = (s: string): string =>
    s.length > 60 ? `${s.slice(0, 57).replace(/\s+/g, " ")}...` : s.replace(/\s+/g, " ");
  return `${m.file.split("/").pop()}:${m.line}:${m.column} ${m.mutator} ${JSON.stringify(one(m.original))} -> ${JSON.stringify(one(m.replacement))}`;
}

function summarise(): void {
  const seconds = (Date.now() - started) / 1000;
  const valid = results.filter((r) => r.outcome !== "invalid");
  const detected = valid.filter((r) => r.outcome === "killed" || r.outcome === "timeout");
  const byUnit = detected.filter((r) => r.by === "unit");
  const bySim = detected.filter((r) => r.by?.startsWith("sim:"));
  const survivors = valid.filter((r) => r.outcome === "survived");
  const pct = (n: number): string =>
    valid.length === 0 ? "n/a" : `${((100 * n) / valid.length).toFixed(1)}%`;
  const out: string[] = [];
  out.push("");
  if (survivors.length > 0) {
    out.push(`survivors (${survivors.length}):`);
    for (const r of survivors) out.push(`  #${r.id} ${describe(r.mutant)}\n      | ${r.mutant.lineText}`);
  }
  const seedsOnly = bySim.map((r) => `  #${r.id} ${describe(r.mutant)} (${r.by})`);
  if (seedsOnly.length > 0) out.push(`killed only by the seed batch (${seedsOnly.length}):`, ...seedsOnly);
  out.push(
    "",
    `mutation score ${pct(detected.length)}: ${detected.length} of ${valid.length} mutants killed ` +
      `(${byUnit.length} by the unit tests, ${bySim.length} more by the seed batch, ` +
      `${detected.filter((r) => r.outcome === "timeout").length} of them by a timeout); ${survivors.length} survived; ` +
      `${results.length - valid.length} did not parse`,
    `unit tests alone: ${pct(byUnit.length)}`,
    `${sampleNote}; ${all.length} mutants in all, ${equivalents.length} excluded as equivalent; ${seconds.toFixed(0)} s`,
  );
  process.stdout.write(`${out.join("\n")}\n`);
  const summary = {
    target: args.target,
    seed: args.seed,
    sample: results.length,
    totalMutants: all.length,
    equivalentExcluded: equivalents.length,
    killed: detected.length,
    killedByUnit: byUnit.length,
    killedBySim: bySim.length,
    survived: survivors.length,
    invalid: results.length - valid.length,
    score: valid.length === 0 ? null : Number(((100 * detected.length) / valid.length).toFixed(1)),
    unitScore: valid.length === 0 ? null : Number(((100 * byUnit.length) / valid.length).toFixed(1)),
    seconds: Math.round(seconds),
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  if (args.json !== undefined) {
    writeFileSync(args.json, JSON.stringify({ summary, results, equivalents }, null, 2));
  }
}

// ---------------------------------------------------------------- arguments

interface Args {
  target: string;
  seed: number;
  sample: number;
  all: boolean;
  mutants: number[];
  list: boolean;
  unitOnly: boolean;
  simSeeds: number;
  json: string | undefined;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    target: "",
    seed: 1,
    sample: 300,
    all: false,
    mutants: [],
    list: false,
    unitOnly: false,
    simSeeds: 8,
    json: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) usage(`${arg} needs a value`);
      return v;
    };
    const int = (): number => {
      const v = value();
      const n = Number(v);
      if (!Number.isSafeInteger(n) || n < 0) usage(`${arg} must be a non-negative integer, not ${v}`);
      return n;
    };
    if (arg === "--seed") a.seed = int();
    else if (arg === "--sample") a.sample = int();
    else if (arg === "--all") a.all = true;
    else if (arg === "--mutant") a.mutants.push(int());
    else if (arg === "--list") a.list = true;
    else if (arg === "--unit-only") a.unitOnly = true;
    else if (arg === "--sim-seeds") a.simSeeds = int();
    else if (arg === "--json") a.json = value();
    else if (arg === "--help") usage("");
    else if (!arg.startsWith("--") && a.target === "") a.target = arg;
    else usage(`unexpected argument ${arg}`);
  }
  if (!(a.target in TARGETS)) usage(`the target must be one of: ${Object.keys(TARGETS).join(", ")}`);
  return a;
}

function usage(why: string): never {
  process.stderr.write(
    `${why ? `mutate: ${why}\n` : ""}usage: npm run mutate -- raft [--seed N] [--sample N | --all | --mutant ID...] ` +
      `[--unit-only] [--sim-seeds N] [--json FILE] [--list]\n`,
  );
  process.exit(why ? 2 : 0);
}
