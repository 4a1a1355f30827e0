/**
 * A project-local swtpm certificate authority: swtpm_localca's configuration
 * written into a directory the caller owns, so provisioning never touches the
 * system-wide /var/lib/swtpm-localca. One CA directory serves many TPM state
 * directories; swtpm_localca itself serialises users of one CA directory with
 * flock(2) on `<caDir>/.lock.swtpm-localca`, including the first run that
 * creates the root and intermediate keys.
 */
import fs from "node:fs/promises";
import path from "node:path";
import { SwtpmError } from "./swtpm-error.js";

export interface LocalCaFiles {
  caDir: string;
  /** swtpm_setup.conf: names the CA tool and the two files below. */
  setupConfPath: string;
  /** swtpm-localca.conf: the CA's statedir, signing key, issuer cert, serial. */
  localCaConfPath: string;
  /** swtpm-localca.options: platform certificate attributes. */
  localCaOptionsPath: string;
}

/** Certificates of a local CA, present once a first TPM has been provisioned with it. */
export interface LocalCaCertPaths {
  /** Self-signed root (PEM). */
  root: string;
  /** Intermediate that signs EK and platform certificates (PEM). */
  intermediate: string;
}

export const SWTPM_LOCALCA_TOOL = "/usr/bin/swtpm_localca";

export function localCaCertPaths(caDir: string): LocalCaCertPaths {
  return {
    root: path.join(caDir, "swtpm-localca-rootca-cert.pem"),
    intermediate: path.join(caDir, "issuercert.pem"),
  };
}

/**
 * Creates `caDir` if needed and (re)writes the three configuration files.
 * Safe to call concurrently for the same directory: each file is written to
 * a unique temporary name and renamed over the old one, and the content is
 * always the same for the same directory.
 */
export async function writeLocalCaConfig(caDirInput: string): Promise<LocalCaFiles> {
  if (caDirInput.length === 0) throw new SwtpmError("bad-argument", "caDir is empty");
  const caDir = path.resolve(caDirInput);
  // The configuration formats are line based: a newline in a path would inject settings.
  if (/[\r\n]/.test(caDir)) throw new SwtpmError("bad-argument", "caDir contains a line break");
  await fs.mkdir(caDir, { recursive: true, mode: 0o700 });
  const files: LocalCaFiles = {
    caDir,
    setupConfPath: path.join(caDir, "swtpm_setup.conf"),
    localCaConfPath: path.join(caDir, "swtpm-localca.conf"),
    localCaOptionsPath: path.join(caDir, "swtpm-localca.options"),
  };
  await writeAtomically(
    files.localCaConfPath,
    [
      `statedir = ${caDir}`,
      `signingkey = ${path.join(caDir, "signkey.pem")}`,
      `issuercert = ${path.join(caDir, "issuercert.pem")}`,
      `certserial = ${path.join(caDir, "certserial")}`,
      "",
    ].join("\n"),
  );
  await writeAtomically(
    files.localCaOptionsPath,
    ["--platform-manufacturer lockbox", "--platform-version 2.1", "--platform-model swtpm", ""].join("\n"),
  );
  await writeAtomically(
    files.setupConfPath,
    [
      `create_certs_tool = ${SWTPM_LOCALCA_TOOL}`,
      `create_certs_tool_config = ${files.localCaConfPath}`,
      `create_certs_tool_options = ${files.localCaOptionsPath}`,
      "active_pcr_banks = sha256",
      "",
    ].join("\n"),
  );
  return files;
}

async function writeAtomically(file: string, content: string): Promise<void> {
  const tmp = `${file}.${process.pid}.${Math.random().toString(16).slice(2)}.tmp`;
  await fs.writeFile(tmp, content, { mode: 0o600 });
  await fs.rename(tmp, file);
}
