import test from "ava";
import { spawn } from "node:child_process";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { SwtpmError, provisionSwtpm, startSwtpm } from "../../tpm/swtpm/index.js";
import { TcpTransport } from "../../tpm/transport/tcp-transport.js";
import { TpmTransportError } from "../../tpm/transport/transport-error.js";
import { newCaDir, startProvisionedSwtpm } from "./swtpm-fixture.js";

const GET_RANDOM_8 = Uint8Array.from([0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x7b, 0, 0x08]);

async function readCert(p: string): Promise<X509Certificate> {
  return new X509Certificate(await fs.readFile(p));
}

/** True while `pid` runs; a zombie (dead, not yet reaped by a container's init) counts as dead. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

test("provisioning three TPMs concurrently against one fresh CA dir: one CA signs three distinct EKs", async (t) => {
  const caDir = await newCaDir(t);
  const work = await fs.mkdtemp(path.join(os.tmpdir(), "lockbox-swtpm-prov-"));
  t.teardown(() => fs.rm(work, { recursive: true, force: true }));
  const provisioned = await Promise.all(
    [0, 1, 2].map((i) => provisionSwtpm({ stateDir: path.join(work, `tpm${i}`), caDir })),
  );
  const root = await readCert(provisioned[0]!.caCertPaths.root);
  const intermediate = await readCert(provisioned[0]!.caCertPaths.intermediate);
  t.true(
    provisioned.every((p) => p.caCertPaths.root.startsWith(caDir)),
    "the CA lives in the given dir",
  );
  t.true(intermediate.verify(root.publicKey), "intermediate is signed by the root");
  const ekKeys = new Set<string>();
  for (const p of provisioned) {
    const ek = await readCert(p.ekCertPaths.rsa);
    t.true(ek.verify(intermediate.publicKey), `${p.stateDir}: RSA EK cert signed by this CA's intermediate`);
    t.true((await readCert(p.ekCertPaths.ecc)).verify(intermediate.publicKey));
    ekKeys.add(ek.publicKey.export({ format: "der", type: "spki" }).toString("hex"));
  }
  t.is(ekKeys.size, 3, "each state directory has its own EK");
});

test("two swtpms start side by side on different free ports and both answer", async (t) => {
  const [a, b] = await Promise.all([startProvisionedSwtpm(t), startProvisionedSwtpm(t)]);
  t.not(a.swtpm.port, b.swtpm.port);
  t.is(a.swtpm.ctrlPort, a.swtpm.port + 1);
  t.is(a.tcti, `swtpm:host=127.0.0.1,port=${a.swtpm.port}`);
  for (const f of [a, b]) {
    const tr = await f.connect();
    t.is(Buffer.from(await tr.send(GET_RANDOM_8)).readUInt32BE(6), 0);
  }
});

test("a port that another swtpm already serves is not taken for our own: start fails with no-free-port", async (t) => {
  const [a, b] = await Promise.all([startProvisionedSwtpm(t), startProvisionedSwtpm(t)]);
  await b.swtpm.stop();
  // The race of a port taken between the free-port probe and swtpm's bind, made certain.
  const attempt = startSwtpm({ stateDir: b.provisioned.stateDir, portCandidates: [a.swtpm.port] });
  attempt.then(
    (wrong) => t.teardown(() => wrong.stop()),
    () => undefined,
  );
  const e = await t.throwsAsync(attempt, { instanceOf: SwtpmError });
  t.is(e?.code, "no-free-port");
  t.true(alive(a.swtpm.pid));
  const tr = await a.connect();
  t.is(Buffer.from(await tr.send(GET_RANDOM_8)).readUInt32BE(6), 0);
});

test("a foreign listener on the first port, even one answering TPM commands, does not pass for the swtpm: start moves to another pair and says why", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  await f.swtpm.stop();
  // Answers every command with a well-formed success (GetRandom's 8 bytes), as a TPM would: a bare
  // TCP connect, or a probe that only checks the answer, would take it for the swtpm.
  const foreign = createServer((socket: Socket) => {
    socket.on("error", () => undefined);
    socket.on("data", () => {
      socket.write(Buffer.from([0x80, 0x01, 0, 0, 0, 0x14, 0, 0, 0, 0, 0, 0x08, 1, 2, 3, 4, 5, 6, 7, 8]));
    });
  });
  await new Promise<void>((resolve) => foreign.listen(0, "127.0.0.1", resolve));
  t.teardown(() => foreign.close());
  const taken = (foreign.address() as AddressInfo).port;
  const retries: { port: number; previous: { port: number; reason: string } }[] = [];
  const swtpm = await startSwtpm({
    stateDir: f.provisioned.stateDir,
    firstPort: taken,
    onPortRetry: (port, previous) => retries.push({ port, previous }),
  });
  t.teardown(() => swtpm.stop());
  t.not(swtpm.port, taken);
  t.is(retries.length, 1);
  t.is(retries[0]!.port, swtpm.port);
  t.is(retries[0]!.previous.port, taken);
  t.regex(retries[0]!.previous.reason, /address already in use|served by another process/i);
  const tr = await TcpTransport.connect({ host: swtpm.host, port: swtpm.port });
  t.teardown(() => tr.close());
  t.is(Buffer.from(await tr.send(GET_RANDOM_8)).readUInt32BE(6), 0);
});

test("a detached swtpm writes to its log file, and an exit during start-up names swtpm's reason from it", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  const logPath = path.join(f.workDir, "detached.log");
  // The state directory is in use by the fixture's swtpm: the second one exits at once.
  const e = await t.throwsAsync(startSwtpm({ stateDir: f.provisioned.stateDir, detachedLogPath: logPath }), {
    instanceOf: SwtpmError,
  });
  t.is(e?.code, "start-failed");
  const said = (await fs.readFile(logPath, "utf8")).trim().split("\n").at(-1)!;
  t.true(said.length > 0, "swtpm wrote nothing to the log file");
  t.true(e!.message.includes(said), `${e!.message} does not name swtpm's reason (${said})`);
});

test("stop() ends the swtpm process and its port stops answering; a second stop() is harmless", async (t) => {
  const f = await startProvisionedSwtpm(t);
  t.true(alive(f.swtpm.pid));
  await f.swtpm.stop();
  t.false(alive(f.swtpm.pid));
  const e = await t.throwsAsync(TcpTransport.connect({ host: "127.0.0.1", port: f.swtpm.port }), {
    instanceOf: TpmTransportError,
  });
  t.is(e?.code, "connect");
  await t.notThrowsAsync(f.swtpm.stop());
});

test("TPM state survives a restart: the same state directory starts again and answers", async (t) => {
  const f = await startProvisionedSwtpm(t);
  await f.swtpm.stop();
  const again = await startSwtpm({ stateDir: f.provisioned.stateDir });
  t.teardown(() => again.stop());
  const tr = await TcpTransport.connect({ host: again.host, port: again.port });
  t.teardown(() => tr.close());
  t.is(Buffer.from(await tr.send(GET_RANDOM_8)).readUInt32BE(6), 0);
});

test("starting a second swtpm on a state directory in use fails with start-failed", async (t) => {
  const f = await startProvisionedSwtpm(t);
  const e = await t.throwsAsync(startSwtpm({ stateDir: f.provisioned.stateDir }), { instanceOf: SwtpmError });
  t.is(e?.code, "start-failed");
});

test("provisioning with an empty state dir path is refused before anything runs", async (t) => {
  const e = await t.throwsAsync(provisionSwtpm({ stateDir: "", caDir: os.tmpdir() }), {
    instanceOf: SwtpmError,
  });
  t.is(e?.code, "bad-argument");
});

test("a swtpm dies with its owner: SIGKILL of the process that started it kills swtpm too", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  await f.swtpm.stop();
  const script = fileURLToPath(new URL("./swtpm-owner-process.js", import.meta.url));
  const owner = spawn(process.execPath, [script, f.provisioned.stateDir], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let swtpmPid: number | undefined;
  t.teardown(() => {
    if (owner.exitCode === null && owner.signalCode === null) owner.kill("SIGKILL");
    if (swtpmPid !== undefined && alive(swtpmPid)) process.kill(swtpmPid, "SIGKILL");
  });
  const line = await new Promise<string>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("owner did not report a swtpm within 20 s")), 20_000);
    owner.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("\n")) {
        clearTimeout(timer);
        resolve(out.split("\n")[0]!);
      }
    });
    owner.once("exit", () => reject(new Error(`owner exited early: ${out}`)));
  });
  swtpmPid = (JSON.parse(line) as { pid: number }).pid;
  t.true(alive(swtpmPid));
  const exited = new Promise((resolve) => owner.once("exit", resolve));
  owner.kill("SIGKILL");
  await exited;
  // Bounded wait for the kernel's parent-death signal to take effect.
  for (let i = 0; i < 250 && alive(swtpmPid); i++) await new Promise((r) => setTimeout(r, 20));
  t.false(alive(swtpmPid), "swtpm outlived its owner");
});
