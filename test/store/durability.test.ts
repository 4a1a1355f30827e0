import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import test from "ava";
import { openPeerStore } from "../../src/store/peer-store.js";

const child = fileURLToPath(new URL("./write-burst-child.js", import.meta.url));

test("every write acknowledged before SIGKILL is in the store after reopening", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-durable-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const proc = spawn(process.execPath, [child, dir], { stdio: ["ignore", "pipe", "inherit"] });
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
  });
  const acked: string[] = [];
  let partial = "";
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    proc.on("exit", (_code, signal) => resolve(signal)),
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error("child acknowledged too few writes within 20 s")),
      20_000,
    );
    proc.stdout.on("data", (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split("\n");
      partial = lines.pop()!;
      acked.push(...lines);
      if (acked.length >= 300) {
        // Kill mid-burst: later writes are in flight, the acknowledged ones must survive.
        proc.kill("SIGKILL");
        clearTimeout(timer);
        resolve();
      }
    });
  });
  t.is(await exited, "SIGKILL");
  const store = await openPeerStore(dir);
  t.teardown(() => store.close());
  for (const key of acked) {
    const value = await store.get("records", key);
    t.is(value === undefined ? undefined : Buffer.from(value).toString(), key);
  }
  t.true(acked.length >= 300);
});
