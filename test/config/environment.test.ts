/**
 * Commands take their directory and connection settings from the environment when no flag gives
 * them (docs/configuration.md, "Environment variables"): the real CLI, as a child process.
 */
import test from "ava";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { runCli } from "../helpers/cli-process.js";

test("init, identity issue and audit verify find their directory in $LOCKBOX_DIR; a bad $LOCKBOX_DEADLINE_MS is a usage error", async (t) => {
  const root = mkdtempSync(join(tmpdir(), "lockbox-env-"));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dir = join(root, "cluster");
  const env = { LOCKBOX_DIR: dir };
  const init = await runCli(["init", "--json"], { env });
  t.is(init.code, 0, init.stderr);
  t.true(existsSync(join(dir, "config.json")));

  const out = join(root, "ids");
  const issued = await runCli(
    // --offline: signs with the init directory's CA key; without it, identity issue goes through the
    // cluster (a running peer), which this test has not started.
    [
      "identity",
      "issue",
      "--offline",
      "--name",
      "svc-env",
      "--role",
      "service",
      "--project",
      "p",
      "--out",
      out,
    ],
    { env },
  );
  t.is(issued.code, 0, issued.stderr);
  t.true(existsSync(join(out, "svc-env.crt")) && existsSync(join(out, "svc-env.key")));

  const verify = await runCli(["audit", "verify"], { env });
  t.is(verify.code, 0, verify.stderr);

  const noDir = await runCli([
    "identity",
    "issue",
    "--offline",
    "--name",
    "x",
    "--role",
    "service",
    "--project",
    "p",
  ]);
  t.is(noDir.code, 2);
  t.regex(noDir.stderr, /--dir is required \(or set \$LOCKBOX_DIR\)/);

  const badDeadline = await runCli(["status"], { env: { ...env, LOCKBOX_DEADLINE_MS: "soon" } });
  t.is(badDeadline.code, 2);
  t.regex(badDeadline.stderr, /LOCKBOX_DEADLINE_MS/);
});
