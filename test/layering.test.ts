import test from "ava";
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, cpSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

const root = new URL("../..", import.meta.url).pathname;

/**
 * Runs the project's dependency-cruiser rules over a small tree of files (path -> source) in a
 * temp dir; returns the report, and whether any rule was broken.
 */
function cruise(files: Record<string, string>): { broken: boolean; report: string } {
  const dir = mkdtempSync(join(tmpdir(), "lockbox-layering-"));
  try {
    cpSync(join(root, ".dependency-cruiser.cjs"), join(dir, ".dependency-cruiser.cjs"));
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions: { module: "NodeNext" } }));
    for (const d of ["cluster", "tpm", "src"]) mkdirSync(join(dir, d), { recursive: true });
    for (const [path, source] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), source);
    }
    const args = ["--config", ".dependency-cruiser.cjs", "src", "cluster", "tpm"];
    try {
      const report = execFileSync(join(root, "node_modules/.bin/depcruise"), args, {
        cwd: dir,
        encoding: "utf8",
        stdio: "pipe",
      });
      return { broken: false, report };
    } catch (err) {
      return { broken: true, report: String((err as { stdout?: string }).stdout) };
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const exporting = (name: string): string => `export const ${name} = 1;\n`;
const importing = (from: string, name: string): string =>
  `import { ${name} } from "${from}";\nexport const use_${name} = ${name};\n`;

// A tree that follows every rule; each case below adds one forbidden import to it.
const LAWFUL: Record<string, string> = {
  "src/errors.ts": exporting("err"),
  "src/time/clock.ts": importing("../errors.js", "err"),
  "src/store/store.ts": exporting("store"),
  "src/keys/keys.ts": importing("../store/store.js", "store"),
  "src/server/server.ts": importing("../keys/keys.js", "keys"),
  "src/peer/root.ts": importing("../server/server.js", "server"),
  "src/cli/main.ts": importing("../peer/root.js", "root"),
  "src/client/client.ts": exporting("client"),
  "cluster/ok.ts": exporting("z"),
  "tpm/ok.ts": exporting("t"),
};

test("the rules accept a tree that follows them", (t) => {
  const { broken, report } = cruise(LAWFUL);
  t.false(broken, report);
});

// Each rule must be able to fail: plant one forbidden import per rule, each in a file of its own
// and none closing a folder cycle but the one meant to, and check that every rule names its file.
// (All in one run: dependency-cruiser takes seconds per run on a loaded machine.)
const PLANTED: [rule: string, path: string, source: string][] = [
  ["tpm-not-to-src", "tpm/bad.ts", importing("../src/errors.js", "err")],
  ["cluster-not-to-src", "cluster/bad-src.ts", importing("../src/errors.js", "err")],
  ["cluster-not-to-tpm", "cluster/bad-tpm.ts", importing("../tpm/ok.js", "t")],
  ["tpm-not-to-cluster", "tpm/bad-cluster.ts", importing("../cluster/ok.js", "z")],
  [
    "raft-core-is-pure",
    "cluster/raft/core/bad.ts",
    `import { readFileSync } from "node:fs";\nexport const r = readFileSync;\n`,
  ],
  ["src-seams-import-nothing", "src/time/bad.ts", importing("../store/store.js", "store")],
  ["src-one-composition-root", "src/config/bad-root.ts", importing("../peer/root.js", "root")],
  ["src-cli-is-the-top", "src/config/bad-cli.ts", importing("../cli/main.js", "main")],
  ["src-core-below-edges", "src/audit/bad.ts", importing("../client/client.js", "client")],
  ["src-client-stands-alone", "src/client/bad.ts", importing("../keys/keys.js", "keys")],
];

test("each dependency rule rejects an import planted to break it, naming the file", (t) => {
  const planted = Object.fromEntries(PLANTED.map(([, path, source]) => [path, source]));
  // store -> keys closes the only folder cycle in the tree: keys -> store -> keys.
  planted["src/store/bad.ts"] = importing("../keys/keys.js", "keys");
  const { broken, report } = cruise({ ...LAWFUL, ...planted });
  t.true(broken, report);
  for (const [rule, path] of PLANTED) t.true(report.includes(`error ${rule}: ${path}`), `${rule}\n${report}`);
  t.regex(report, /error src-no-folder-cycles: src\/(keys|store) →/);
});
