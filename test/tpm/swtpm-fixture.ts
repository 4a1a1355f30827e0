/**
 * Test fixture shared by the TPM tests: a freshly provisioned swtpm (its own
 * state directory, so its own EK and seeds) on a free loopback port, stopped
 * and deleted in the test's teardown, also when the test fails.
 *
 * All TPMs of one test process share one local CA directory (created on first
 * use, removed at process exit); `newCaDir(t)` gives a separate CA.
 *
 * Provisioning costs about a second of CPU (RSA and ECC EKs, certificates).
 * `identity: "shared"` instead copies a template state provisioned once per
 * test process: the copy is a separate simulator, but with the same EK and
 * primary seeds as every other shared copy. Use it only where the TPM's
 * identity does not matter; each simulated peer needs "fresh".
 */
import type { ExecutionContext } from "ava";
import { mkdtempSync, rmSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  type ProvisionedSwtpm,
  type RunningSwtpm,
  provisionSwtpm,
  startSwtpm,
} from "../../tpm/swtpm/index.js";
import { Tpm } from "../../tpm/client/tpm.js";
import { HANDLE_RANGE } from "../../tpm/spec/constants.js";
import { TcpTransport } from "../../tpm/transport/tcp-transport.js";
import type { TpmTransport } from "../../tpm/transport/transport.js";

export interface SwtpmFixture {
  readonly swtpm: RunningSwtpm;
  readonly provisioned: ProvisionedSwtpm;
  /** `swtpm:host=127.0.0.1,port=P` for TPM2TOOLS_TCTI. */
  readonly tcti: string;
  /** A scratch directory deleted in teardown. */
  readonly workDir: string;
  /**
   * A new TCP transport to this swtpm, closed in teardown. swtpm serves one
   * connection at a time: close it before another client (tpm2-tools) connects.
   */
  connect(): Promise<TpmTransport>;
  /**
   * Transient objects and sessions still in the TPM, as hex handles (empty when
   * nothing leaked). Closes this fixture's open transports first: swtpm serves
   * one connection at a time.
   */
  leftoverHandles(): Promise<string[]>;
}

let sharedCaDir: string | undefined;

/** The per-process local CA directory, shared by every fixture TPM of this test file. */
export function sharedLocalCaDir(): string {
  if (sharedCaDir === undefined) {
    const dir = mkdtempSync(path.join(os.tmpdir(), "lockbox-swtpm-ca-"));
    sharedCaDir = dir;
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  }
  return sharedCaDir;
}

/** A fresh, empty CA directory for this test only (for "a different CA" cases). */
export async function newCaDir(t: ExecutionContext): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "lockbox-swtpm-ca-"));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

let sharedTemplate: Promise<ProvisionedSwtpm> | undefined;

function sharedTemplateState(): Promise<ProvisionedSwtpm> {
  sharedTemplate ??= provisionSwtpm({
    stateDir: path.join(sharedLocalCaDir(), "template-state"),
    caDir: sharedLocalCaDir(),
  });
  return sharedTemplate;
}

export interface SwtpmFixtureOptions {
  /** Local CA for a fresh TPM; default: this process's shared CA. */
  caDir?: string;
  /** "fresh" (default): its own EK and seeds. "shared": a copy of a per-process template TPM. */
  identity?: "fresh" | "shared";
}

export async function startProvisionedSwtpm(
  t: ExecutionContext,
  options: SwtpmFixtureOptions = {},
): Promise<SwtpmFixture> {
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), "lockbox-swtpm-"));
  const transports: TpmTransport[] = [];
  let swtpm: RunningSwtpm | undefined;
  // Registered first so it runs last (ava runs teardowns in reverse order): delete after stop.
  t.teardown(async () => {
    for (const tr of transports) await tr.close().catch(() => undefined);
    await swtpm?.stop();
    await fs.rm(workDir, { recursive: true, force: true });
  });
  const stateDir = path.join(workDir, "state");
  let provisioned: ProvisionedSwtpm;
  if (options.identity === "shared") {
    if (options.caDir !== undefined)
      throw new Error("a shared-identity swtpm uses the shared CA; caDir is for fresh ones");
    const template = await sharedTemplateState();
    await fs.cp(template.stateDir, stateDir, { recursive: true });
    const ekcerts = path.join(stateDir, "ekcerts");
    provisioned = {
      ...template,
      stateDir,
      ekCertPaths: { rsa: path.join(ekcerts, "ek-rsa2048.crt"), ecc: path.join(ekcerts, "ek-secp384r1.crt") },
    };
  } else {
    provisioned = await provisionSwtpm({ stateDir, caDir: options.caDir ?? sharedLocalCaDir() });
  }
  swtpm = await startSwtpm({ stateDir: provisioned.stateDir });
  const running = swtpm;
  return {
    swtpm: running,
    provisioned,
    tcti: running.tcti,
    workDir,
    async connect() {
      const tr = await TcpTransport.connect({ host: running.host, port: running.port });
      transports.push(tr);
      return tr;
    },
    async leftoverHandles() {
      for (const tr of transports.splice(0)) await tr.close();
      const tpm = new Tpm(await TcpTransport.connect({ host: running.host, port: running.port }));
      try {
        const handles = [
          ...(await tpm.getHandles(HANDLE_RANGE.TRANSIENT_FIRST)),
          ...(await tpm.getHandles(HANDLE_RANGE.HMAC_SESSION_FIRST)),
          ...(await tpm.getHandles(HANDLE_RANGE.POLICY_SESSION_FIRST)),
        ];
        return handles.map((h) => `0x${h.toString(16)}`);
      } finally {
        await tpm.close();
      }
    },
  };
}
