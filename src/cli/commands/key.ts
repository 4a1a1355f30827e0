/**
 * `lockbox key <subcommand>`: the storage node's view of lockbox. Each
 * subcommand is one KeyService call through LockboxClient; `--json` prints
 * the result as one JSON line, otherwise a short human line.
 */
import { constants, promises as fs } from "node:fs";

import type {
  Consumer,
  ConsumerInput,
  FetchedKey,
  Grant,
  KeyMetadata,
  LockboxClient,
} from "../../client/index.js";
import type { CliCommand } from "../command.js";
import { EXIT_OK, EXIT_USAGE } from "../command.js";
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
  requiredPositional,
  runGuarded,
  stringFlag,
  type OptionSpec,
  type ParsedArgs,
} from "../client-options.js";

interface Subcommand {
  summary: string;
  /** The synopsis after `lockbox key NAME`. */
  synopsis: string;
  /** Lines describing the subcommand's own flags. */
  flagsHelp: string[];
  options: OptionSpec;
  positionalsMax: number;
  run(client: LockboxClient, args: ParsedArgs, json: boolean): Promise<number>;
}

const COMMON = {
  ...CONNECTION_OPTIONS,
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;
const JSON_HELP = "  --json                 print the result as one JSON line";

const KEY_EXPIRY_HELP = [
  "  --expires-in D         the key expires after D, e.g. 12h, 90d; then it is not served",
  "  --expires-at TIME      or at an ISO 8601 time (default: never)",
];
const REQUEST_ID_HELP =
  "  --request-id ID        client request id: a retry with the same ID returns the first key";
const EXPIRY_OPTIONS = { "expires-in": { type: "string" }, "expires-at": { type: "string" } } as const;
const CONSUMER_OPTIONS = {
  service: { type: "string" },
  "resource-type": { type: "string" },
  "resource-id": { type: "string" },
} as const;
const CONSUMER_HELP = [
  "  --service S            the consuming service, e.g. cinder",
  "  --resource-type T      e.g. volume",
  "  --resource-id R        e.g. the volume's id",
];

const SUBCOMMANDS: Record<string, Subcommand> = {
  create: {
    summary: "create a key with fresh random material",
    synopsis: "--project P --scope S --name N [--bits 128|192|256|512] [--expires-in D] [--request-id ID]",
    flagsHelp: [
      "  --project P            project the key belongs to",
      "  --scope S              groups a volume with its snapshots and clones, e.g. the volume id",
      "  --name N               a label, e.g. the volume's name",
      "  --bits B               AES key length: 128, 192, 256 (default) or 512 (for XTS)",
      ...KEY_EXPIRY_HELP,
      REQUEST_ID_HELP,
    ],
    options: {
      project: { type: "string" },
      scope: { type: "string" },
      name: { type: "string" },
      bits: { type: "string" },
      "request-id": { type: "string" },
      ...EXPIRY_OPTIONS,
    },
    positionalsMax: 0,
    async run(client, args, json) {
      const bits = stringFlag(args, "bits") ?? "256";
      if (!["128", "192", "256", "512"].includes(bits))
        throw new UsageError(`--bits must be 128, 192, 256 or 512, got '${bits}'`, "--bits");
      const expiresAt = optionalExpiry(args);
      const key = await client.createKey(
        {
          project: requiredFlag(args, "project"),
          scope: requiredFlag(args, "scope"),
          name: requiredFlag(args, "name"),
          bitLength: Number(bits),
          ...(expiresAt !== undefined ? { expiresAt } : {}),
        },
        requestIdOption(args),
      );
      return printKey(key, json, "created");
    },
  },
  import: {
    summary: "store existing material as a new key, or an opaque or passphrase secret",
    synopsis:
      "--project P --scope S --name N (--material-file FILE | --material-hex HEX | --material-base64 B64) [--type T]",
    flagsHelp: [
      "  --project P            project the key belongs to (required)",
      "  --scope S, --name N    as for create",
      "  --material-file FILE   raw bytes, e.g. an existing LUKS key file",
      "  --material-hex HEX     bytes as hex (visible in the process list: prefer a file)",
      "  --material-base64 B64  bytes as base64 (same caveat)",
      "  --type T               symmetric (default: an AES key of 16, 24, 32 or 64 bytes),",
      "                         opaque or passphrase (1..4000 bytes)",
      "  --bits B               opaque and passphrase: a declared bit length (default none)",
      ...KEY_EXPIRY_HELP,
      REQUEST_ID_HELP,
    ],
    options: {
      project: { type: "string" },
      scope: { type: "string" },
      name: { type: "string" },
      "material-file": { type: "string" },
      "material-hex": { type: "string" },
      "material-base64": { type: "string" },
      type: { type: "string" },
      bits: { type: "string" },
      "request-id": { type: "string" },
      ...EXPIRY_OPTIONS,
    },
    positionalsMax: 0,
    async run(client, args, json) {
      const type = stringFlag(args, "type") ?? "symmetric";
      if (type !== "symmetric" && type !== "opaque" && type !== "passphrase") {
        throw new UsageError(`--type must be symmetric, opaque or passphrase, got '${type}'`, "--type");
      }
      const bits = intFlag(args, "bits", 0, 65536);
      if (type === "symmetric" && bits !== undefined) {
        throw new UsageError(
          "--bits is for opaque and passphrase secrets; an AES key's follows from its bytes",
          "--bits",
        );
      }
      const expiresAt = optionalExpiry(args);
      const material = await readMaterial(args);
      try {
        const key = await client.importKey(
          {
            project: requiredFlag(args, "project"),
            scope: requiredFlag(args, "scope"),
            name: requiredFlag(args, "name"),
            secretType: type,
            material,
            ...(bits !== undefined ? { bitLength: bits } : {}),
            ...(expiresAt !== undefined ? { expiresAt } : {}),
          },
          requestIdOption(args),
        );
        return printKey(key, json, "imported");
      } finally {
        material.fill(0);
      }
    },
  },
  get: {
    summary: "print a key's material (hex, base64, or raw bytes for cryptsetup --key-file)",
    synopsis: "ID [--format hex|base64|raw] [--out FILE]",
    flagsHelp: [
      "  --format F             hex (default), base64, or raw bytes",
      "  --out FILE             write the material to FILE (created 0600) instead of stdout",
    ],
    options: { format: { type: "string" }, out: { type: "string" } },
    positionalsMax: 1,
    async run(client, args, json) {
      const id = requiredPositional(args, "key ID");
      const format = stringFlag(args, "format") ?? "hex";
      if (format !== "hex" && format !== "base64" && format !== "raw") {
        throw new UsageError(`--format must be hex, base64 or raw, got '${format}'`, "--format");
      }
      if (json && format === "raw")
        throw new UsageError("--format raw cannot be combined with --json", "--format");
      const out = stringFlag(args, "out");
      if (out === undefined && format === "raw" && process.stdout.isTTY === true) {
        throw new UsageError(
          "refusing to write raw key bytes to a terminal; use --out FILE or a pipe",
          "--format",
        );
      }
      const fetched = await client.getKey(id);
      try {
        await emitMaterial(fetched, format, out, json);
      } finally {
        fetched.material.fill(0);
      }
      return EXIT_OK;
    },
  },
  meta: {
    summary: "print a key's metadata (no material)",
    synopsis: "ID",
    flagsHelp: [],
    options: {},
    positionalsMax: 1,
    async run(client, args, json) {
      return printKey(await client.getKeyMetadata(requiredPositional(args, "key ID")), json);
    },
  },
  list: {
    summary: "list a project's keys, optionally of one scope",
    synopsis: "--project P [--scope S] [--page-size N] [--page-token T | --all]",
    flagsHelp: [
      "  --project P            project to list (required)",
      "  --scope S              only this scope",
      "  --page-size N          keys per page, 1-1000 (default 100)",
      "  --page-token T         continue from a previous page",
      "  --all                  follow pages to the end",
    ],
    options: {
      project: { type: "string" },
      scope: { type: "string" },
      "page-size": { type: "string" },
      "page-token": { type: "string" },
      all: { type: "boolean" },
    },
    positionalsMax: 0,
    async run(client, args, json) {
      const input = {
        project: requiredFlag(args, "project"),
        scope: stringFlag(args, "scope") ?? "",
        pageSize: intFlag(args, "page-size", 1, 1000) ?? 0,
      };
      let keys: KeyMetadata[];
      let nextPageToken = "";
      if (boolFlag(args, "all")) {
        if (stringFlag(args, "page-token") !== undefined) {
          throw new UsageError("--all and --page-token exclude each other", "--page-token");
        }
        keys = await client.listAllKeys(input);
      } else {
        const page = await client.listKeys({ ...input, pageToken: stringFlag(args, "page-token") ?? "" });
        keys = page.items;
        nextPageToken = page.nextPageToken;
      }
      if (json) {
        printJson({ keys, nextPageToken });
      } else {
        for (const k of keys) process.stdout.write(keyLine(k) + "\n");
        if (nextPageToken !== "") process.stdout.write(`(more: --page-token ${nextPageToken})\n`);
      }
      return EXIT_OK;
    },
  },
  delete: {
    summary: "destroy a key: the material is gone, a tombstone stays",
    synopsis: "ID [--force]",
    flagsHelp: ["  --force                delete even if the key has consumers (they go with it)"],
    options: { force: { type: "boolean" } },
    positionalsMax: 1,
    async run(client, args, json) {
      const key = await client.deleteKey(requiredPositional(args, "key ID"), {
        force: boolFlag(args, "force"),
      });
      return printKey(key, json, "destroyed");
    },
  },
  clone: {
    summary: "same material under a new id in the same scope (snapshots)",
    synopsis: "ID [--name N] [--request-id ID]",
    flagsHelp: ["  --name N               name of the new key (default: the parent's)", REQUEST_ID_HELP],
    options: { name: { type: "string" }, "request-id": { type: "string" } },
    positionalsMax: 1,
    async run(client, args, json) {
      const key = await client.cloneKey(
        requiredPositional(args, "key ID"),
        stringFlag(args, "name") ?? "",
        requestIdOption(args),
      );
      return printKey(key, json, "cloned");
    },
  },
  "rekey-clone": {
    summary: "fresh material under a new id in the same scope (LUKS key change on clone)",
    synopsis: "ID [--name N] [--request-id ID]",
    flagsHelp: ["  --name N               name of the new key (default: the parent's)", REQUEST_ID_HELP],
    options: { name: { type: "string" }, "request-id": { type: "string" } },
    positionalsMax: 1,
    async run(client, args, json) {
      const key = await client.rekeyClone(
        requiredPositional(args, "key ID"),
        stringFlag(args, "name") ?? "",
        requestIdOption(args),
      );
      return printKey(key, json, "rekeyed clone");
    },
  },
  grant: {
    summary: "let another identity get one key until a deadline",
    synopsis: "ID --grantee NAME (--expires-in DURATION | --expires-at TIME)",
    flagsHelp: [
      "  --grantee NAME         identity (certificate common name) that may get the key",
      "  --expires-in D         e.g. 90s, 15m, 12h, 7d (at most 30d)",
      "  --expires-at TIME      an ISO 8601 time, e.g. 2026-12-01T00:00:00Z",
    ],
    options: {
      grantee: { type: "string" },
      "expires-in": { type: "string" },
      "expires-at": { type: "string" },
    },
    positionalsMax: 1,
    async run(client, args, json) {
      const grant = await client.createGrant({
        keyId: requiredPositional(args, "key ID"),
        grantee: requiredFlag(args, "grantee"),
        expiresAt: expiry(args),
      });
      return printGrant(grant, json, "granted");
    },
  },
  revoke: {
    summary: "end a grant before its deadline",
    synopsis: "GRANT_ID",
    flagsHelp: [],
    options: {},
    positionalsMax: 1,
    async run(client, args, json) {
      return printGrant(await client.revokeGrant(requiredPositional(args, "grant ID")), json, "revoked");
    },
  },
  "add-consumer": {
    summary: "record that a resource uses a key (a key with consumers needs delete --force)",
    synopsis: "ID --service S --resource-type T --resource-id R",
    flagsHelp: CONSUMER_HELP,
    options: CONSUMER_OPTIONS,
    positionalsMax: 1,
    async run(client, args, json) {
      const res = await client.addConsumer(requiredPositional(args, "key ID"), consumerFlags(args));
      return printConsumers(res.key.id, res.consumers, json, res.changed ? "added" : "already there");
    },
  },
  "remove-consumer": {
    summary: "remove a consumer from a key",
    synopsis: "ID --service S --resource-type T --resource-id R",
    flagsHelp: CONSUMER_HELP,
    options: CONSUMER_OPTIONS,
    positionalsMax: 1,
    async run(client, args, json) {
      const res = await client.removeConsumer(requiredPositional(args, "key ID"), consumerFlags(args));
      return printConsumers(res.key.id, res.consumers, json, res.changed ? "removed" : "not there");
    },
  },
  consumers: {
    summary: "list the consumers of a key",
    synopsis: "ID",
    flagsHelp: [],
    options: {},
    positionalsMax: 1,
    async run(client, args, json) {
      const id = requiredPositional(args, "key ID");
      return printConsumers(id, await client.listConsumers(id), json);
    },
  },
};

function topUsage(): string {
  const width = Math.max(...Object.keys(SUBCOMMANDS).map((n) => n.length));
  return [
    "usage: lockbox key <subcommand> [options]",
    "",
    "subcommands:",
    ...Object.entries(SUBCOMMANDS).map(([n, s]) => `  ${n.padEnd(width)}  ${s.summary}`),
    "",
    "Run `lockbox key <subcommand> --help` for its options.",
  ].join("\n");
}

function subUsage(name: string, sub: Subcommand): string {
  return [
    `usage: lockbox key ${name} ${sub.synopsis} [connection] [--json]`,
    "",
    sub.summary,
    "",
    ...(sub.flagsHelp.length > 0
      ? ["options:", ...sub.flagsHelp, JSON_HELP, ""]
      : ["options:", JSON_HELP, ""]),
    CONNECTION_HELP,
  ].join("\n");
}

export const command: CliCommand = {
  name: "key",
  summary: "create, import, get, list, clone, rekey, grant, consume and delete keys",
  async run(argv) {
    const [name, ...rest] = argv;
    if (name === undefined || name === "--help" || name === "-h" || name === "help") {
      process.stdout.write(topUsage() + "\n");
      return name === undefined ? EXIT_USAGE : EXIT_OK;
    }
    const sub = Object.hasOwn(SUBCOMMANDS, name) ? SUBCOMMANDS[name] : undefined;
    if (sub === undefined) {
      process.stderr.write(`lockbox key: unknown subcommand '${name}'\n\n${topUsage()}\n`);
      return EXIT_USAGE;
    }
    const usage = subUsage(name, sub);
    return runGuarded(`lockbox key ${name}`, usage, async () => {
      const args = parseCommandArgs(rest, { ...COMMON, ...sub.options }, sub.positionalsMax);
      if (boolFlag(args, "help")) {
        process.stdout.write(usage + "\n");
        return EXIT_OK;
      }
      const client = await clientFrom(connectionSettings(args));
      try {
        return await sub.run(client, args, boolFlag(args, "json"));
      } finally {
        client.close();
      }
    });
  },
};

// ---- helpers -------------------------------------------------------------

function keyLine(k: KeyMetadata): string {
  const kind =
    k.secretType === "SYMMETRIC"
      ? `${k.algorithm}-${k.bitLength}`
      : `${k.secretType.toLowerCase()}${k.algorithm === "UNSPECIFIED" ? "" : ` ${k.algorithm}`}${k.bitLength > 0 ? `-${k.bitLength}` : ""}`;
  const parts = [
    k.id,
    `project=${k.project}`,
    `scope=${k.scope === "" ? "-" : k.scope}`,
    `name=${k.name === "" ? "-" : k.name}`,
    kind,
    k.state,
  ];
  if (k.parentId !== undefined) parts.push(`parent=${k.parentId}`);
  if (k.createdAt !== undefined) parts.push(`created=${k.createdAt.toISOString()}`);
  if (k.updatedAt !== undefined && k.updatedAt.getTime() !== k.createdAt?.getTime())
    parts.push(`updated=${k.updatedAt.toISOString()}`);
  if (k.expiresAt !== undefined) parts.push(`expires=${k.expiresAt.toISOString()}`);
  return parts.join("  ");
}

function printConsumers(keyId: string, consumers: Consumer[], json: boolean, verb?: string): number {
  if (json) {
    printJson({ keyId, consumers });
    return EXIT_OK;
  }
  if (verb !== undefined) process.stdout.write(`${verb}: key ${keyId} has ${consumers.length} consumer(s)\n`);
  for (const c of consumers) {
    const since = c.createdAt !== undefined ? `  since=${c.createdAt.toISOString()}` : "";
    process.stdout.write(
      `${JSON.stringify(c.service)} ${JSON.stringify(c.resourceType)} ${JSON.stringify(c.resourceId)}${since}\n`,
    );
  }
  return EXIT_OK;
}

function consumerFlags(args: ParsedArgs): ConsumerInput {
  return {
    service: requiredFlag(args, "service"),
    resourceType: requiredFlag(args, "resource-type"),
    resourceId: requiredFlag(args, "resource-id"),
  };
}

function requestIdOption(args: ParsedArgs): { clientRequestId?: string } {
  const id = stringFlag(args, "request-id");
  return id === undefined ? {} : { clientRequestId: id };
}

function printKey(key: KeyMetadata, json: boolean, verb?: string): number {
  if (json) printJson(key);
  else process.stdout.write((verb !== undefined ? `${verb} ` : "") + keyLine(key) + "\n");
  return EXIT_OK;
}

function printGrant(g: Grant, json: boolean, verb: string): number {
  if (json) {
    printJson(g);
  } else {
    const until = g.expiresAt?.toISOString() ?? "?";
    const revoked = g.revokedAt !== undefined ? `  revoked=${g.revokedAt.toISOString()}` : "";
    process.stdout.write(`${verb} ${g.id}  key=${g.keyId}  grantee=${g.grantee}  until=${until}${revoked}\n`);
  }
  return EXIT_OK;
}

async function emitMaterial(
  fetched: FetchedKey,
  format: string,
  out: string | undefined,
  json: boolean,
): Promise<void> {
  if (json) {
    const encoded = fetched.material.toString(format === "base64" ? "base64" : "hex");
    const text = JSON.stringify({ key: fetched.key, material: encoded, format }) + "\n";
    if (out !== undefined) await writePrivate(out, Buffer.from(text));
    else process.stdout.write(text);
    return;
  }
  const bytes =
    format === "raw"
      ? fetched.material
      : Buffer.from(fetched.material.toString(format === "base64" ? "base64" : "hex") + "\n");
  if (out !== undefined) {
    await writePrivate(out, bytes);
  } else {
    await new Promise<void>((resolve, reject) =>
      process.stdout.write(bytes, (e) => (e ? reject(e) : resolve())),
    );
  }
  if (bytes !== fetched.material) bytes.fill(0);
}

/** Writes a file readable by its owner only; the mode is set before any byte lands. */
async function writePrivate(path: string, bytes: Uint8Array): Promise<void> {
  const handle = await fs.open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
  try {
    await handle.chmod(0o600);
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function readMaterial(args: ParsedArgs): Promise<Buffer> {
  const file = stringFlag(args, "material-file");
  const hex = stringFlag(args, "material-hex");
  const b64 = stringFlag(args, "material-base64");
  const given = [file, hex, b64].filter((x) => x !== undefined).length;
  if (given !== 1) {
    throw new UsageError(
      "give exactly one of --material-file, --material-hex, --material-base64",
      "--material-file",
    );
  }
  if (file !== undefined) {
    try {
      return await fs.readFile(file);
    } catch (err) {
      throw new UsageError(
        `--material-file: cannot read ${file} (${(err as NodeJS.ErrnoException).code})`,
        "--material-file",
      );
    }
  }
  if (hex !== undefined) {
    if (!/^([0-9a-fA-F]{2})+$/.test(hex)) throw new UsageError("--material-hex is not hex", "--material-hex");
    return Buffer.from(hex, "hex");
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64!))
    throw new UsageError("--material-base64 is not base64", "--material-base64");
  return Buffer.from(b64!, "base64");
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A key's optional expiration (no 30-day cap: the peer checks only that it is in the future). */
function optionalExpiry(args: ParsedArgs): Date | undefined {
  if (stringFlag(args, "expires-in") === undefined && stringFlag(args, "expires-at") === undefined)
    return undefined;
  return expiry(args);
}

function expiry(args: ParsedArgs): Date {
  const inText = stringFlag(args, "expires-in");
  const atText = stringFlag(args, "expires-at");
  if ((inText === undefined) === (atText === undefined)) {
    throw new UsageError("give exactly one of --expires-in, --expires-at", "--expires-in");
  }
  if (inText !== undefined) {
    const m = /^(\d{1,9})([smhd])$/.exec(inText);
    if (m === null)
      throw new UsageError(
        `--expires-in must look like 90s, 15m, 12h or 7d, got '${inText}'`,
        "--expires-in",
      );
    return new Date(Date.now() + Number(m[1]) * UNIT_MS[m[2]!]!);
  }
  const at = new Date(atText!);
  if (Number.isNaN(at.getTime()))
    throw new UsageError(`--expires-at is not a time: '${atText}'`, "--expires-at");
  return at;
}
