/**
 * Provisions one swtpm state directory: a fresh TPM 2.0 with an RSA 2048 and
 * an ECC P-384 EK, their certificates (and a platform certificate) in NV,
 * signed by the project-local CA in `caDir`. Each simulated peer needs its
 * own state directory: a copied state shares one EK.
 */
import { execFile } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { type LocalCaCertPaths, localCaCertPaths, writeLocalCaConfig } from "./local-ca.js";
import { SwtpmError } from "./swtpm-error.js";

export interface ProvisionOptions {
  /** Created if missing; any TPM state in it is overwritten. */
  stateDir: string;
  /** The local CA; created on first use, shared by any number of state directories. */
  caDir: string;
  timeoutMs?: number;
}

export interface ProvisionedSwtpm {
  stateDir: string;
  caDir: string;
  /** DER certificates written by swtpm_setup (the same ones are in NV). */
  ekCertPaths: { rsa: string; ecc: string };
  caCertPaths: LocalCaCertPaths;
}

const DEFAULT_PROVISION_TIMEOUT_MS = 60_000;
/** swtpm_setup chatter kept for error messages; the rest is dropped. */
const OUTPUT_BYTES_MAX = 64 * 1024;

export async function provisionSwtpm(options: ProvisionOptions): Promise<ProvisionedSwtpm> {
  if (options.stateDir.length === 0) throw new SwtpmError("bad-argument", "stateDir is empty");
  const stateDir = path.resolve(options.stateDir);
  const ca = await writeLocalCaConfig(options.caDir);
  const ekCertDir = path.join(stateDir, "ekcerts");
  // swtpm_setup refuses to write certificate files into a directory that does not exist.
  await fs.mkdir(ekCertDir, { recursive: true, mode: 0o700 });
  const args = [
    "--tpm2",
    "--tpmstate",
    stateDir,
    "--config",
    ca.setupConfPath,
    "--create-ek-cert",
    "--create-platform-cert",
    "--write-ek-cert-files",
    ekCertDir,
    "--overwrite",
  ];
  await run("swtpm_setup", args, options.timeoutMs ?? DEFAULT_PROVISION_TIMEOUT_MS);
  const ekCertPaths = {
    rsa: path.join(ekCertDir, "ek-rsa2048.crt"),
    ecc: path.join(ekCertDir, "ek-secp384r1.crt"),
  };
  const caCertPaths = localCaCertPaths(ca.caDir);
  for (const p of [ekCertPaths.rsa, ekCertPaths.ecc, caCertPaths.root, caCertPaths.intermediate]) {
    try {
      await fs.access(p);
    } catch (err) {
      throw new SwtpmError("setup-failed", `swtpm_setup succeeded but did not produce ${p}`, { cause: err });
    }
  }
  return { stateDir, caDir: ca.caDir, ekCertPaths, caCertPaths };
}

function run(tool: string, args: string[], timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      tool,
      args,
      { timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: OUTPUT_BYTES_MAX },
      (err, _stdout, stderr) => {
        if (err === null) return resolve();
        const errno = (err as NodeJS.ErrnoException).code;
        if (errno === "ENOENT") {
          return reject(
            new SwtpmError("tool-missing", `${tool} is not installed (apt-get install swtpm-tools)`),
          );
        }
        const reason = err.killed ? `timed out after ${timeoutMs} ms` : `exited with ${String(err.code)}`;
        reject(
          new SwtpmError("setup-failed", `${tool} ${reason}: ${lastLines(String(stderr), 5)}`, {
            cause: err,
          }),
        );
      },
    );
  });
}

export function lastLines(text: string, count: number): string {
  return text.trim().split("\n").slice(-count).join(" | ");
}
