import test from "ava";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { isLockboxError } from "../../src/errors.js";
import { spawnOwned } from "../helpers/spawn-owned.js";
import { writePeerTls } from "../raft-process/peer-tls.js";
import { GrpcReplicaCluster } from "./grpc-replication-cluster.js";

const IDS = ["a", "b", "c"];

test("a replica process SIGKILLed while holding batches fails the pending sends UNAVAILABLE at once, and the coordinator still gets W = 2 from a and b", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-repl-child-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writePeerTls(join(dir, "tls"), "c");
  const child = fileURLToPath(new URL("./replica-server-child.js", import.meta.url));
  const proc = spawnOwned(process.execPath, [child, dir, "c", IDS.join(","), "hold"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
  });
  const lines = createInterface({ input: proc.stdout! });
  let batches = 0;
  let onBatch: () => void = () => {};
  const port = await new Promise<number>((resolve, reject) => {
    lines.on("line", (l) => {
      if (l.startsWith("PORT ")) resolve(Number(l.slice(5)));
      if (l.startsWith("BATCH ")) {
        batches++;
        onBatch();
      }
    });
    proc.on("exit", () => reject(new Error("the child exited before listening")));
  });
  const c = await GrpcReplicaCluster.start(t, IDS, {
    external: new Map([["c", port]]),
    link: { requestTimeoutMs: 60_000 },
    batchTimeoutMs: 60_000,
  });
  const a = c.peer("a");
  const k = c.newKey();
  const reachedC = new Promise<void>((resolve) => (onBatch = resolve));
  const write = a.coordinator.write(k);
  const direct = a.link.send("c", { from: "a", items: [{ kind: "digest", partition: 0 }] });
  direct.catch(() => {});
  await write; // acknowledged by a and b while c holds its copy
  await reachedC;
  while (batches < 2) await new Promise((r) => setTimeout(r, 10));
  const killedAt = Date.now();
  proc.kill("SIGKILL");
  const e = await t.throwsAsync(direct);
  t.true(isLockboxError(e, "UNAVAILABLE"), String(e));
  t.true(Date.now() - killedAt < 15_000, "failed when the connection died, not at the 60 s deadline");
  t.truthy(await c.recordOn("a", k));
  t.truthy(await c.recordOn("b", k));
  // With c dead, writes still reach W from a and b; sends to c fail rather than hang.
  const k2 = c.newKey();
  await a.coordinator.write(k2);
  t.truthy(await c.recordOn("b", k2));
  const down = await t.throwsAsync(
    a.link.send("c", { from: "a", items: [{ kind: "digest", partition: 0 }] }),
  );
  t.true(isLockboxError(down, "UNAVAILABLE"), String(down));
});
