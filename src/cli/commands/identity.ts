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
import { defineCommand, type LeafDefinition } from "../cli-definition.js";
import {
  dirFlag,
  UsageError,
  boolFlag,
  clientFrom,
  connectionSettings,
  intFlag,
  requiredFlag,
  stringFlag,
  type ParsedArgs,
} from "../client-options.js";
import { EXIT_OK } from "../command.js";
import { emitRecord, emitResult, formatTable } from "../output.js";

const issueLeaf: LeafDefinition = {
  name: "issue",
  summary: "issue a client certificate and record the identity cluster-wide",
  description:
    "A peer issues a client certificate from the cluster CA and records the identity in the control\n" +
    "state (it works on every peer); writes OUTDIR/NAME.crt and OUTDIR/NAME.key (mode 0600).\n" +
    "A service identity may use the keys of its projects (at least one --project); an admin may use\n" +
    "every project and the AdminService. With --offline, signs with DIR's ca.key and records nothing.",
  options: [
    {
      flags: "--name <NAME>",
      description: "the identity: 1..128 of A-Z a-z 0-9 . _ : @ -, starting with a letter or digit",
      required: true,
    },
    { flags: "--role <ROLE>", description: "what it may do", required: true, choices: ["service", "admin"] },
    {
      flags: "--project <P>",
      description: "a project the identity may use (repeatable; required for service)",
      repeatable: true,
    },
    {
      flags: "--out <OUTDIR>",
      description: "where to write NAME.crt and NAME.key (default DIR, else the current directory)",
    },
    {
      flags: "--days <N>",
      description: `validity in days (at most ${CLIENT_VALIDITY_DAYS_MAX})`,
      default: String(CLIENT_VALIDITY_DAYS_DEFAULT),
    },
    {
      flags: "--offline",
      description: "sign locally with --dir's ca.key (not recorded, not revocable by name)",
    },
  ],
  connection: true,
  output: true,
  run: issue,
};

export const command = defineCommand({
  name: "identity",
  summary: "issue, list and revoke client identities (cluster-wide)",
  subcommands: [
    issueLeaf,
    {
      name: "list",
      summary: "every identity: its role, projects, certificate serials, and whether it is revoked",
      options: [],
      connection: true,
      output: true,
      run: list,
    },
    {
      name: "revoke",
      summary: "revoke every certificate of an identity; every peer refuses them once it commits",
      options: [
        { flags: "--name <NAME>", description: "the identity to revoke", required: true },
        { flags: "--reason <TEXT>", description: "recorded with the revocation" },
      ],
      connection: true,
      output: true,
      run: revoke,
    },
  ],
});

async function issue(args: ParsedArgs): Promise<number> {
  const offline = boolFlag(args, "offline");
  const dirGiven = stringFlag(args, "dir") ?? (process.env.LOCKBOX_DIR || undefined);
  const dir = offline ? resolve(dirFlag(args)) : dirGiven === undefined ? undefined : resolve(dirGiven);
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
  const result = {
    identity: name,
    role,
    projects,
    certificate: certificatePath,
    key: keyPath,
    ca: caPath,
    serial: cert.serialNumber.toUpperCase(),
    recorded: !offline,
    notAfter: notAfter.toISOString(),
  };
  emitRecord(result, () =>
    [
      `issued ${role} identity '${name}'${projects.length > 0 ? ` for projects ${projects.join(", ")}` : ""}, valid until ${notAfter.toISOString()}`,
      `  certificate ${certificatePath}`,
      `  key         ${keyPath} (0600)`,
      `  use with --ca ${caPath} --cert ${certificatePath} --key ${keyPath}`,
      "",
    ].join("\n"),
  );
  return EXIT_OK;
}

async function list(args: ParsedArgs): Promise<number> {
  const client = await clientFrom(connectionSettings(args));
  try {
    const res = await client.adminCall<{
      identities: { name: string; role: string; projects: string[]; serials: string[]; revoked: boolean }[];
    }>("ListIdentities", {});
    emitResult(res.identities, () =>
      formatTable(
        ["NAME", "ROLE", "REVOKED", "PROJECTS", "SERIALS"],
        res.identities.map((i) => [
          i.name,
          i.role,
          i.revoked ? "yes" : "no",
          i.projects.join(",") || "-",
          i.serials.join(","),
        ]),
      ),
    );
    return EXIT_OK;
  } finally {
    client.close();
  }
}

async function revoke(args: ParsedArgs): Promise<number> {
  const name = requiredFlag(args, "name");
  const client = await clientFrom(connectionSettings(args));
  try {
    const res = await client.adminCall<{ revoked_serials: string[] }>("RevokeIdentity", {
      name,
      reason: stringFlag(args, "reason") ?? "",
    });
    emitRecord(
      { identity: name, revokedSerials: res.revoked_serials },
      () => `revoked identity '${name}' (certificates ${res.revoked_serials.join(", ") || "none"})\n`,
    );
    return EXIT_OK;
  } finally {
    client.close();
  }
}
