/**
 * `lockbox identity issue | list | revoke`: client identities in the replicated control state. `issue`
 * asks a peer (AdminService.IssueIdentity), which signs with the cluster CA key the control state holds
 * wrapped under the master key and records the identity cluster-wide, so the certificate works on every
 * peer and a revocation reaches every peer. `issue --offline` signs with an init directory's ca.key
 * instead, recording nothing (before any peer runs). The identity's name becomes the certificate's
 * common name, its role and projects SAN URIs; the peer reads them back from the certificate on every call.
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
import { assertValidIdentityName, assertValidProjectName } from "../../pki/identity-names.js";
import { writeCertificateFile, writePrivateKeyFile } from "../../pki/pem-files.js";
import { x509 } from "../../pki/x509.js";
import {
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  UsageError,
  boolFlag,
  clientFrom,
  connectionSettings,
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
  "usage: lockbox identity issue --name NAME --role service|admin [--project P ...] [--out OUTDIR]",
  "                              [--days N] [connection | --offline --dir DIR] [--json]",
  "       lockbox identity list [connection] [--json]",
  "       lockbox identity revoke --name NAME [--reason TEXT] [connection] [--json]",
  "",
  "issue: a peer issues a client certificate from the cluster CA and records the identity in the",
  "control state (it works on every peer); writes OUTDIR/NAME.crt and OUTDIR/NAME.key (mode 0600).",
  "A service identity may use the keys of its projects (at least one --project); an admin may use",
  "every project and the AdminService. With --offline, signs with DIR's ca.key and records nothing.",
  "list: every identity, its role, projects, certificate serials, and whether it is revoked.",
  "revoke: revokes every certificate of the identity; every peer refuses them once it commits.",
  "",
  "options:",
  "  --offline            sign locally with DIR's ca.key (not recorded, not revocable by name)",
  "  --dir DIR            an init directory: CA, admin identity and address (or ca.key with --offline)",
  "  --name NAME          the identity: 1..128 of A-Z a-z 0-9 . _ : @ -, starting with a letter or digit",
  "  --role ROLE          service or admin (required)",
  "  --project P          a project the identity may use (repeatable; required for service)",
  "  --out OUTDIR         where to write NAME.crt and NAME.key (default DIR, else the current directory)",
  "  --reason TEXT        (revoke) recorded with the revocation",
  `  --days N             validity in days (default ${CLIENT_VALIDITY_DAYS_DEFAULT}, at most ${CLIENT_VALIDITY_DAYS_MAX})`,
  "  --json               print the result as one JSON line",
  "  -h, --help           show this help",
  "",
  CONNECTION_HELP,
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
    if (sub === "list") return runGuarded("lockbox identity list", USAGE, () => list(rest));
    if (sub === "revoke") return runGuarded("lockbox identity revoke", USAGE, () => revoke(rest));
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
      ...CONNECTION_OPTIONS,
      offline: { type: "boolean" },
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
  const offline = boolFlag(args, "offline");
  const dirFlag = stringFlag(args, "dir");
  const dir = offline
    ? resolve(requiredFlag(args, "dir"))
    : dirFlag === undefined
      ? undefined
      : resolve(dirFlag);
  const name = requiredFlag(args, "name");
  const role = requiredFlag(args, "role");
  if (!isRole(role)) throw new UsageError(`--role must be service or admin, got '${role}'`, "--role");
  const projects = (args.values.project as string[] | undefined) ?? [];
  if (role === "service" && projects.length === 0) {
    throw new UsageError("a service identity needs at least one --project", "--project");
  }
  const days = intFlag(args, "days", 1, CLIENT_VALIDITY_DAYS_MAX) ?? CLIENT_VALIDITY_DAYS_DEFAULT;
  const out = resolve(stringFlag(args, "out") ?? dir ?? ".");
  const certificatePath = join(out, `${name}.crt`);
  const keyPath = join(out, `${name}.key`);
  for (const p of [certificatePath, keyPath]) {
    if (existsSync(p)) throw new LockboxError("ALREADY_EXISTS", `${p} already exists; refusing to overwrite`);
  }

  try {
    assertValidIdentityName("identity", name);
    projects.forEach((p) => assertValidProjectName("project", p));
  } catch (err) {
    if (isLockboxError(err, "INVALID_ARGUMENT")) {
      const flag = err.field === "identity" ? "--name" : "--project";
      throw new UsageError(err.message.replace(/^[a-z_]+: /, `${flag} `), flag);
    }
    throw err;
  }
  let issued: { certificatePem: string; privateKeyPem: string };
  let caPath: string;
  try {
    if (offline) {
      const config = await loadPeerConfig(dir!);
      caPath = resolvePeerPath(dir!, config, "caCertificate");
      const ca = {
        certificatePem: await readFile(caPath, "utf8"),
        privateKeyPem: await readFile(resolvePeerPath(dir!, config, "caKey"), "utf8"),
      };
      issued = await issueClientCertificate(ca, { identity: name, role, projects, days });
    } else {
      const settings = connectionSettings(args);
      caPath = settings.ca;
      const client = await clientFrom(settings);
      try {
        const res = await client.adminCall<{ certificate_pem: string; private_key_pem: string }>(
          "IssueIdentity",
          {
            name,
            role,
            projects,
            days,
          },
        );
        issued = { certificatePem: res.certificate_pem, privateKeyPem: res.private_key_pem };
      } finally {
        client.close();
      }
    }
  } catch (err) {
    // Bad names are the caller's mistake: report them against the flag.
    if (isLockboxError(err, "INVALID_ARGUMENT")) {
      const flag =
        err.field === "identity" ? "--name" : err.field === "project" ? "--project" : `--${err.field}`;
      throw new UsageError(err.message.replace(/^[a-z_]+: /, `${flag} `), flag);
    }
    throw err;
  }
  await mkdir(out, { recursive: true, mode: 0o700 });
  await writeCertificateFile(certificatePath, issued.certificatePem);
  await writePrivateKeyFile(keyPath, issued.privateKeyPem);
  const cert = new x509.X509Certificate(issued.certificatePem);
  const notAfter = cert.notAfter;
  if (boolFlag(args, "json")) {
    printJson({
      identity: name,
      role,
      projects,
      certificate: certificatePath,
      key: keyPath,
      ca: caPath,
      serial: cert.serialNumber.toUpperCase(),
      recorded: !offline,
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

async function list(argv: string[]): Promise<number> {
  const args = parseCommandArgs(
    argv,
    { ...CONNECTION_OPTIONS, json: { type: "boolean" }, help: { type: "boolean", short: "h" } },
    0,
  );
  if (boolFlag(args, "help")) {
    process.stdout.write(USAGE + "\n");
    return EXIT_OK;
  }
  const client = await clientFrom(connectionSettings(args));
  try {
    const res = await client.adminCall<{
      identities: { name: string; role: string; projects: string[]; serials: string[]; revoked: boolean }[];
    }>("ListIdentities", {});
    if (boolFlag(args, "json")) printJson(res.identities);
    else {
      for (const i of res.identities) {
        process.stdout.write(
          `${i.name.padEnd(24)} ${i.role.padEnd(8)} ${i.revoked ? "REVOKED " : "        "}projects: ${i.projects.join(",") || "-"}  serials: ${i.serials.join(",")}\n`,
        );
      }
    }
    return EXIT_OK;
  } finally {
    client.close();
  }
}

async function revoke(argv: string[]): Promise<number> {
  const args = parseCommandArgs(
    argv,
    {
      ...CONNECTION_OPTIONS,
      name: { type: "string" },
      reason: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    0,
  );
  if (boolFlag(args, "help")) {
    process.stdout.write(USAGE + "\n");
    return EXIT_OK;
  }
  const name = requiredFlag(args, "name");
  const client = await clientFrom(connectionSettings(args));
  try {
    const res = await client.adminCall<{ revoked_serials: string[] }>("RevokeIdentity", {
      name,
      reason: stringFlag(args, "reason") ?? "",
    });
    if (boolFlag(args, "json")) printJson({ identity: name, revokedSerials: res.revoked_serials });
    else
      process.stdout.write(
        `revoked identity '${name}' (certificates ${res.revoked_serials.join(", ") || "none"})\n`,
      );
    return EXIT_OK;
  } finally {
    client.close();
  }
}
