/**
 * Runs tpm2-tools against a test swtpm, as an independent implementation to
 * cross-check ours. Every run is bounded by a timeout; transient objects and
 * sessions are flushed after each step (swtpm has no resource manager).
 *
 * swtpm serves one connection at a time: close our own transports to the same
 * swtpm before calling these.
 */
import { execFile } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { decodeExact } from "../../tpm/marshal/reader.js";
import { TpmtPublic } from "../../tpm/spec/public.js";
import type { PcrValue } from "../../tpm/verify/pcr-values.js";

const TOOL_TIMEOUT_MS = 20_000;

export class Tpm2Tools {
  constructor(
    readonly tcti: string,
    /** Where the tools' files go; the caller deletes it. */
    readonly dir: string,
  ) {}

  path(name: string): string {
    return path.join(this.dir, name);
  }

  /** Runs one tool; rejects with its stderr when it exits non-zero. */
  run(tool: string, args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(
        tool,
        args,
        {
          cwd: this.dir,
          env: { ...process.env, TPM2TOOLS_TCTI: this.tcti },
          timeout: TOOL_TIMEOUT_MS,
          killSignal: "SIGKILL",
          maxBuffer: 1024 * 1024,
        },
        (err, stdout, stderr) => {
          if (err === null) return resolve(stdout);
          reject(new ToolError(tool, typeof err.code === "number" ? err.code : -1, stderr));
        },
      );
    });
  }

  /** Flushes transient objects, loaded and saved sessions. */
  async flushAll(): Promise<void> {
    for (const flag of ["-t", "-l", "-s"]) await this.run("tpm2_flushcontext", [flag]);
  }

  /**
   * The RSA EK (default template) and an AK under it, as tpm2_createak makes it: by default ECC
   * P-256 with ECDSA-SHA256; `ak` picks another key type, hash or scheme (e.g. RSA with RSA-PSS).
   */
  async createEkAndAk(ak: AkOptions = {}): Promise<{
    ekPublic: TpmtPublic;
    akPublic: TpmtPublic;
    akPublicTpmt: Uint8Array;
  }> {
    await this.run("tpm2_createek", ["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"]);
    await this.run("tpm2_createak", [
      ...["-C", "ek.ctx", "-c", "ak.ctx", "-G", ak.keyAlg ?? "ecc"],
      ...["-g", ak.hash ?? "sha256", "-s", ak.scheme ?? "ecdsa"],
      ...["-u", "ak.pub", "-r", "ak.priv", "-n", "ak.name"],
    ]);
    await this.flushAll();
    const ekPublic = await this.readTpm2bPublic("ek.pub");
    const akPublicTpmt = (await fs.readFile(this.path("ak.pub"))).subarray(2);
    return {
      ekPublic,
      akPublic: await this.readTpm2bPublic("ak.pub"),
      akPublicTpmt: new Uint8Array(akPublicTpmt),
    };
  }

  /** Re-creates the EK (deterministic) and loads the saved AK under it, e.g. after a swtpm restart. */
  async reloadAk(): Promise<void> {
    await this.run("tpm2_createek", ["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"]);
    await this.flushAll();
    // The EK's authPolicy is PolicySecret(endorsement): loading a child under it needs that session.
    await this.run("tpm2_startauthsession", ["--policy-session", "-S", "session.ctx"]);
    await this.run("tpm2_policysecret", ["-S", "session.ctx", "-c", "e"]);
    await this.run("tpm2_load", [
      "-C",
      "ek.ctx",
      "-u",
      "ak.pub",
      "-r",
      "ak.priv",
      "-c",
      "ak.ctx",
      "-P",
      "session:session.ctx",
    ]);
    await this.run("tpm2_flushcontext", ["session.ctx"]);
    await this.flushAll();
  }

  /** tpm2_activatecredential with the AK in ak.ctx and the EK in ek.ctx (after createEkAndAk); returns the credential. */
  async activateCredential(credentialFile: string): Promise<Uint8Array> {
    await this.run("tpm2_createek", ["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"]);
    await this.run("tpm2_startauthsession", ["--policy-session", "-S", "session.ctx"]);
    try {
      await this.run("tpm2_policysecret", ["-S", "session.ctx", "-c", "e"]);
      await this.run("tpm2_activatecredential", [
        ...["-c", "ak.ctx", "-C", "ek.ctx", "-i", credentialFile, "-o", "activated.out"],
        ...["-P", "session:session.ctx"],
      ]);
    } finally {
      await this.run("tpm2_flushcontext", ["session.ctx"]).catch(() => undefined);
      await this.flushAll();
    }
    return new Uint8Array(await fs.readFile(this.path("activated.out")));
  }

  /** Offline tpm2_makecredential (no TPM needed) to an EK given as a TPM2B_PUBLIC file. */
  async makeCredential(
    ekTpm2bPublicFile: string,
    akName: Uint8Array,
    secret: Uint8Array,
  ): Promise<Uint8Array> {
    await fs.writeFile(this.path("secret.bin"), secret);
    await this.run("tpm2_makecredential", [
      ...["-T", "none", "-u", ekTpm2bPublicFile, "-s", "secret.bin"],
      ...["-n", Buffer.from(akName).toString("hex"), "-o", "mkcred.out"],
    ]);
    return new Uint8Array(await fs.readFile(this.path("mkcred.out")));
  }

  /**
   * A quote by the AK in ak.ctx over `selection` (e.g. "sha256:0,1,2,3,7") with extraData `nonce`,
   * signed with `sign.hash` (default sha256) and `sign.scheme` (default: the key type's).
   */
  async quote(
    selection: string,
    nonce: Uint8Array,
    prefix = "q",
    sign: { hash?: string; scheme?: string } = {},
  ): Promise<{ attest: Uint8Array; signature: Uint8Array }> {
    await this.run("tpm2_quote", [
      ...["-c", "ak.ctx", "-l", selection, "-q", Buffer.from(nonce).toString("hex")],
      ...["-m", `${prefix}.msg`, "-s", `${prefix}.sig`, "-o", `${prefix}.pcrs`, "-g", sign.hash ?? "sha256"],
      ...(sign.scheme === undefined ? [] : ["--scheme", sign.scheme]),
    ]);
    await this.flushAll();
    return {
      attest: new Uint8Array(await fs.readFile(this.path(`${prefix}.msg`))),
      signature: new Uint8Array(await fs.readFile(this.path(`${prefix}.sig`))),
    };
  }

  /** TPM2_ClockSet (owner auth, empty here): moves the clock forward, and the TPM marks it `safe` again. */
  async setClock(ms: bigint): Promise<void> {
    await this.run("tpm2_setclock", [ms.toString()]);
  }

  /** PCR values of one sha256 selection, in ascending index order. */
  async readPcrs(pcrs: readonly number[]): Promise<PcrValue[]> {
    await this.run("tpm2_pcrread", [`sha256:${pcrs.join(",")}`, "-o", "pcrs.bin"]);
    const raw = await fs.readFile(this.path("pcrs.bin"));
    const sorted = [...pcrs].sort((a, b) => a - b);
    return sorted.map((pcr, i) => ({
      hashAlg: 0x000b,
      pcr,
      value: new Uint8Array(raw.subarray(32 * i, 32 * i + 32)),
    }));
  }

  async extendPcr(pcr: number, digestHex: string): Promise<void> {
    await this.run("tpm2_pcrextend", [`${pcr}:sha256=${digestHex}`]);
  }

  async readTpm2bPublic(file: string): Promise<TpmtPublic> {
    const bytes = await fs.readFile(this.path(file));
    return decodeExact(bytes.subarray(2), "TPMT_PUBLIC", TpmtPublic.unmarshal);
  }
}

export interface AkOptions {
  /** tpm2_createak -G: "ecc" (default) or "rsa". */
  keyAlg?: "ecc" | "rsa";
  /** tpm2_createak -g: the AK's signing hash, "sha256" (default), "sha384", ... */
  hash?: string;
  /** tpm2_createak -s: "ecdsa" (default), "rsassa" or "rsapss". */
  scheme?: string;
}

export class ToolError extends Error {
  override readonly name = "ToolError";
  constructor(
    readonly tool: string,
    readonly exitCode: number,
    readonly stderr: string,
  ) {
    super(`${tool} exited with ${exitCode}: ${stderr.trim().split("\n").slice(-3).join(" | ")}`);
  }
}
