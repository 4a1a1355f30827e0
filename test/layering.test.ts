import test from "ava";
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, cpSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = new URL("../..", import.meta.url).pathname;

// The layering rule must be able to fail: put a forbidden import into a copy
// of the tree and check that dependency-cruiser rejects it.
test("dependency rule rejects cluster/ or tpm/ importing src/", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "lockbox-layering-"));
  try {
    for (const d of ["cluster", "tpm", "src"]) mkdirSync(join(dir, d), { recursive: true });
    cpSync(join(root, ".dependency-cruiser.cjs"), join(dir, ".dependency-cruiser.cjs"));
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions: { module: "NodeNext" } }));
    writeFileSync(join(dir, "src/peer.ts"), "export const x = 1;\n");
    writeFileSync(join(dir, "tpm/bad.ts"), "import { x } from '../src/peer.js';\nexport const y = x;\n");
    writeFileSync(join(dir, "cluster/ok.ts"), "export const z = 1;\n");
    const run = (): string =>
      execFileSync(
        join(root, "node_modules/.bin/depcruise"),
        ["--config", ".dependency-cruiser.cjs", "src", "cluster", "tpm"],
        {
          cwd: dir,
          encoding: "utf8",
          stdio: "pipe",
        },
      );
    const err = t.throws(run);
    t.regex(String((err as { stdout?: string }).stdout), /tpm-not-to-src/);
    rmSync(join(dir, "tpm/bad.ts"));
    t.notThrows(run);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
