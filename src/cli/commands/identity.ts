/**
 * `lockbox identity issue`: issues a client certificate signed by the
 * cluster CA of an init directory. The identity's name becomes the
 * certificate's common name, its role and projects SAN URIs; the peer reads
 * them back from the certificate on every call.
 */
import { mkdir, readFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { loadPeerConfig, resolvePeerPath } from "../../config/peer-config.js";
import { LockboxError, isLockboxError } from "../../errors.js";
import { isRole } from "../../identity/caller.js";
import {
  CLIENT_VALIDITY_DAYS_DEFAULT,
  CLIENT_VALIDITY_DAYS_MAX,
  issueClientCertificate,
} from "../../pki/certificate-authority.js";
import { writeCertificateFile, writePrivateKeyFile } from "../../pki/pem-files.js";
import { x509 } from "../../pki/x509.js";
import {
  dirFlag,
  UsageError,
  boolFlag,
  intFlag,
  parseCommandArgs,
  printJson,
  requiredFlag,
  runGuarded,
  stringFlag,
} from "../client-options.js";
import type { CliCommand } from "../command.js";
import { EXIT_OK, EXIT_USAGE } from "../command.js";

const USAGE = [
  "usage: lockbox identity issue --dir DIR --name NAME --role service|admin [--project P ...]",
  "                              [--out OUTDIR] [--days N] [--json]",
  "",
  "Issues a client certificate signed by DIR's cluster CA and writes OUTDIR/NAME.crt and",
  "OUTDIR/NAME.key (mode 0600). A service identity may use the keys of its projects (at",
  "least one --project); an admin may use every project and the AdminService.",
  "",
  "options:",
  "  --dir DIR            the init directory holding ca.crt and ca.key (required)  [$LOCKBOX_DIR]",
  "  --name NAME          the identity: 1..128 of A-Z a-z 0-9 . _ : @ -, starting with a letter or digit",
  "  --role ROLE          service or admin (required)",
  "  --project P          a project the identity may use (repeatable; required for service)",
  "  --out OUTDIR         where to write NAME.crt and NAME.key (default DIR)",
  `  --days N             validity in days (default ${CLIENT_VALIDITY_DAYS_DEFAULT}, at most ${CLIENT_VALIDITY_DAYS_MAX})`,
  "  --json               print the result as one JSON line",
  "  -h, --help           show this help",
].join("\n");

export const command: CliCommand = {
  name: "identity",
  summary: "issue client certificates for service identities",
  run(argv) {
    const [sub, ...rest] = argv;
    if (sub === undefined || sub === "--help" || sub === "-h" || sub === "help") {
      process.stdout.write(USAGE + "\n");
      return Promise.resolve(sub === undefined ? EXIT_USAGE : EXIT_OK);
    }
    if (sub !== "issue") {
      process.stderr.write(`lockbox identity: unknown subcommand '${sub}'\n\n${USAGE}\n`);
      return Promise.resolve(EXIT_USAGE);
    }
    return runGuarded("lockbox identity issue", USAGE, () => issue(rest));
  },
};

async function issue(argv: string[]): Promise<number> {
  const args = parseCommandArgs(
    argv,
    {
      dir: { type: "string" },
      name: { type: "string" },
      role: { type: "string" },
      project: { type: "string", multiple: true },
      out: { type: "string" },
      days: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    0,
  );
  if (boolFlag(args, "help")) {
    process.stdout.write(USAGE + "\n");
    return EXIT_OK;
  }
  const dir = resolve(dirFlag(args));
  const name = requiredFlag(args, "name");
  const role = requiredFlag(args, "role");
  if (!isRole(role)) throw new UsageError(`--role must be service or admin, got '${role}'`, "--role");
  const projects = (args.values.project as string[] | undefined) ?? [];
  if (role === "service" && projects.length === 0) {
    throw new UsageError("a service identity needs at least one --project", "--project");
  }
  const days = intFlag(args, "days", 1, CLIENT_VALIDITY_DAYS_MAX) ?? CLIENT_VALIDITY_DAYS_DEFAULT;
  const out = resolve(stringFlag(args, "out") ?? dir);
  const certificatePath = join(out, `${name}.crt`);
  const keyPath = join(out, `${name}.key`);

  const config = await loadPeerConfig(dir);
  const ca = {
    certificatePem: await readFile(resolvePeerPath(dir, config, "caCertificate"), "utf8"),
    privateKeyPem: await readFile(resolvePeerPath(dir, config, "caKey"), "utf8"),
  };
  let issued;
  try {
    issued = await issueClientCertificate(ca, { identity: name, role, projects, days });
  } catch (err) {
    // Bad names are the caller's mistake: report them against the flag.
    if (isLockboxError(err, "INVALID_ARGUMENT")) {
      const flag =
        err.field === "identity" ? "--name" : err.field === "project" ? "--project" : `--${err.field}`;
      throw new UsageError(err.message.replace(/^[a-z_]+: /, `${flag} `), flag);
    }
    throw err;
  }
  for (const p of [certificatePath, keyPath]) {
    if (existsSync(p)) throw new LockboxError("ALREADY_EXISTS", `${p} already exists; refusing to overwrite`);
  }
  await mkdir(out, { recursive: true, mode: 0o700 });
  await writeCertificateFile(certificatePath, issued.certificatePem);
  await writePrivateKeyFile(keyPath, issued.privateKeyPem);
  const notAfter = new x509.X509Certificate(issued.certificatePem).notAfter;
  const caPath = resolvePeerPath(dir, config, "caCertificate");
  if (boolFlag(args, "json")) {
    printJson({
      identity: name,
      role,
      projects,
      certificate: certificatePath,
      key: keyPath,
      ca: caPath,
      notAfter: notAfter.toISOString(),
    });
  } else {
    process.stdout.write(
      [
        `issued ${role} identity '${name}'${projects.length > 0 ? ` for projects ${projects.join(", ")}` : ""}, valid until ${notAfter.toISOString()}`,
        `  certificate ${certificatePath}`,
        `  key         ${keyPath} (0600)`,
        `  use with --ca ${caPath} --cert ${certificatePath} --key ${keyPath}`,
        "",
      ].join("\n"),
    );
  }
  return EXIT_OK;
}
