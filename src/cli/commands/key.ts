/**
 * `lockbox key <subcommand>`: the storage node's view of lockbox. Each
 * subcommand is one KeyService call through LockboxClient; `--json` prints
 * the result as one JSON line, otherwise a short human line.
 */
import { promises as fs } from "node:fs";

import type {
  Consumer,
  ConsumerInput,
  FetchedKey,
  Grant,
  KeyMetadata,
  LockboxClient,
} from "../../client/index.js";
import { defineCommand, type LeafDefinition, type OptionDefinition } from "../cli-definition.js";
import { EXIT_FAILURE, EXIT_OK } from "../command.js";
import {
  UsageError,
  boolFlag,
  clientFrom,
  connectionSettings,
  intFlag,
  requiredFlag,
  requiredPositional,
  stringFlag,
  type ParsedArgs,
} from "../client-options.js";
import { confirm, emitList, emitRecord, outputMode, writePrivateFile, type Column } from "../output.js";
import { fetchedKeyJson, keyJson } from "../proto-json.js";

/** A key subcommand: its definition without the body, and a body that gets a connected client. */
interface KeySubcommand extends Omit<LeafDefinition, "run" | "connection" | "output"> {
  run(client: LockboxClient, args: ParsedArgs): Promise<number>;
}

const KEY_ID = { name: "<id>", description: "the key's id" };
const EXPIRY_OPTIONS: OptionDefinition[] = [
  { flags: "--expires-in <D>", description: "the key expires after D, e.g. 12h, 90d; then it is not served" },
  { flags: "--expires-at <TIME>", description: "or at an ISO 8601 time (default: never)" },
];
const REQUEST_ID: OptionDefinition = {
  flags: "--request-id <ID>",
  description: "client request id: a retry with the same ID returns the first key",
};
const CONSUMER_OPTIONS: OptionDefinition[] = [
  { flags: "--service <S>", description: "the consuming service, e.g. cinder", required: true },
  { flags: "--resource-type <T>", description: "e.g. volume", required: true },
  { flags: "--resource-id <R>", description: "e.g. the volume's id", required: true },
];
const NEW_NAME: OptionDefinition = {
  flags: "--name <N>",
  description: "name of the new key (default: the parent's)",
};

const SUBCOMMANDS: KeySubcommand[] = [
  {
    name: "create",
    summary: "create a key with fresh random material",
    options: [
      { flags: "--project <P>", description: "project the key belongs to", required: true },
      {
        flags: "--scope <S>",
        description: "groups a volume with its snapshots and clones, e.g. the volume id",
        required: true,
      },
      { flags: "--name <N>", description: "a label, e.g. the volume's name", required: true },
      {
        flags: "--bits <B>",
        description: "AES key length (512 is for XTS)",
        choices: ["128", "192", "256", "512"],
        default: "256",
      },
      ...EXPIRY_OPTIONS,
      REQUEST_ID,
    ],
    async run(client, args) {
      const expiresAt = optionalExpiry(args);
      const key = await client.createKey(
        {
          project: requiredFlag(args, "project"),
          scope: requiredFlag(args, "scope"),
          name: requiredFlag(args, "name"),
          bitLength: Number(stringFlag(args, "bits") ?? "256"),
          ...(expiresAt !== undefined ? { expiresAt } : {}),
        },
        requestIdOption(args),
      );
      return printKey(key, "created");
    },
  },
  {
    name: "import",
    summary: "store existing material as a new key, or an opaque or passphrase secret",
    description: "Give the material with exactly one of --material-file, --material-hex, --material-base64.",
    options: [
      { flags: "--project <P>", description: "project the key belongs to", required: true },
      { flags: "--scope <S>", description: "as for create", required: true },
      { flags: "--name <N>", description: "as for create", required: true },
      { flags: "--material-file <FILE>", description: "raw bytes, e.g. an existing LUKS key file" },
      {
        flags: "--material-hex <HEX>",
        description: "bytes as hex (visible in the process list: prefer a file)",
      },
      { flags: "--material-base64 <B64>", description: "bytes as base64 (same caveat)" },
      {
        flags: "--type <T>",
        description: "symmetric: an AES key of 16, 24, 32 or 64 bytes; opaque or passphrase: 1..4000 bytes",
        choices: ["symmetric", "opaque", "passphrase"],
        default: "symmetric",
      },
      { flags: "--bits <B>", description: "opaque and passphrase: a declared bit length (default none)" },
      ...EXPIRY_OPTIONS,
      REQUEST_ID,
    ],
    async run(client, args) {
      const type = stringFlag(args, "type") ?? "symmetric";
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
            secretType: type as "symmetric" | "opaque" | "passphrase",
            material,
            ...(bits !== undefined ? { bitLength: bits } : {}),
            ...(expiresAt !== undefined ? { expiresAt } : {}),
          },
          requestIdOption(args),
        );
        return printKey(key, "imported");
      } finally {
        material.fill(0);
      }
    },
  },
  {
    name: "get",
    summary: "print a key's material (hex, base64, or raw bytes for cryptsetup --key-file)",
    arguments: [KEY_ID],
    options: [
      {
        flags: "--format <F>",
        description: "encoding of the material",
        choices: ["hex", "base64", "raw"],
        default: "hex",
      },
      { flags: "--out <FILE>", description: "write the material to FILE (created 0600) instead of stdout" },
      { flags: "--force", description: "with --out: replace FILE if it exists" },
    ],
    async run(client, args) {
      const id = requiredPositional(args, "key ID");
      const format = stringFlag(args, "format") ?? "hex";
      const json = outputMode().json;
      if (json && format === "raw")
        throw new UsageError("--format raw cannot be combined with --json", "--format");
      if (outputMode().field !== undefined)
        throw new UsageError("key get prints material; --field is for metadata (use key meta)", "--field");
      const out = stringFlag(args, "out");
      if (out === undefined && format === "raw" && process.stdout.isTTY === true) {
        throw new UsageError(
          "refusing to write raw key bytes to a terminal; use --out FILE or a pipe",
          "--format",
        );
      }
      if (out !== undefined && !boolFlag(args, "force") && (await exists(out))) {
        throw new UsageError(`--out ${out} exists; refusing to overwrite it without --force`, "--out");
      }
      const fetched = await client.getKey(id);
      try {
        await emitMaterial(fetched, format, out, json, boolFlag(args, "force"));
      } finally {
        fetched.material.fill(0);
      }
      return EXIT_OK;
    },
  },
  {
    name: "meta",
    summary: "print a key's metadata (no material)",
    arguments: [KEY_ID],
    options: [],
    async run(client, args) {
      return printKey(await client.getKeyMetadata(requiredPositional(args, "key ID")));
    },
  },
  {
    name: "list",
    summary: "list a project's keys, optionally of one scope",
    options: [
      { flags: "--project <P>", description: "project to list", required: true },
      { flags: "--scope <S>", description: "only this scope" },
      { flags: "--page-size <N>", description: "keys per page, 1-1000 (default 100)" },
      { flags: "--page-token <T>", description: "continue from a previous page" },
      { flags: "--all", description: "follow pages to the end" },
    ],
    async run(client, args) {
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
      const records = keys.map(keyJson);
      emitList(
        keys,
        records,
        { keys: records, nextPageToken },
        KEY_COLUMNS,
        nextPageToken !== "" ? `(more: --page-token ${nextPageToken})` : undefined,
      );
      return EXIT_OK;
    },
  },
  {
    name: "delete",
    summary: "destroy a key: the material is gone, a tombstone stays",
    description: "Asks for confirmation on a terminal; scripts pass --yes.",
    arguments: [KEY_ID],
    options: [
      { flags: "-y, --yes", description: "do not ask for confirmation (needed without a terminal)" },
      { flags: "--force", description: "delete even if the key has consumers (they go with it)" },
    ],
    async run(client, args) {
      const id = requiredPositional(args, "key ID");
      if (!(await confirm(`destroy key ${id} and its material for good`, boolFlag(args, "yes")))) {
        process.stderr.write("lockbox key delete: not confirmed; nothing changed\n");
        return EXIT_FAILURE;
      }
      const key = await client.deleteKey(id, { force: boolFlag(args, "force") });
      return printKey(key, "destroyed");
    },
  },
  {
    name: "clone",
    summary: "same material under a new id in the same scope (snapshots)",
    arguments: [KEY_ID],
    options: [NEW_NAME, REQUEST_ID],
    async run(client, args) {
      const key = await client.cloneKey(
        requiredPositional(args, "key ID"),
        stringFlag(args, "name") ?? "",
        requestIdOption(args),
      );
      return printKey(key, "cloned");
    },
  },
  {
    name: "rekey-clone",
    summary: "fresh material under a new id in the same scope (LUKS key change on clone)",
    arguments: [KEY_ID],
    options: [NEW_NAME, REQUEST_ID],
    async run(client, args) {
      const key = await client.rekeyClone(
        requiredPositional(args, "key ID"),
        stringFlag(args, "name") ?? "",
        requestIdOption(args),
      );
      return printKey(key, "rekeyed clone");
    },
  },
  {
    name: "grant",
    summary: "let another identity get one key until a deadline",
    description: "Give exactly one of --expires-in, --expires-at.",
    arguments: [KEY_ID],
    options: [
      {
        flags: "--grantee <NAME>",
        description: "identity (certificate common name) that may get the key",
        required: true,
      },
      { flags: "--expires-in <D>", description: "e.g. 90s, 15m, 12h, 7d (at most 30d)" },
      { flags: "--expires-at <TIME>", description: "an ISO 8601 time, e.g. 2026-12-01T00:00:00Z" },
    ],
    async run(client, args) {
      const grant = await client.createGrant({
        keyId: requiredPositional(args, "key ID"),
        grantee: requiredFlag(args, "grantee"),
        expiresAt: expiry(args),
      });
      return printGrant(grant, "granted");
    },
  },
  {
    name: "revoke",
    summary: "end a grant before its deadline",
    arguments: [{ name: "<grant-id>", description: "the grant's id" }],
    options: [],
    async run(client, args) {
      return printGrant(await client.revokeGrant(requiredPositional(args, "grant ID")), "revoked");
    },
  },
  {
    name: "add-consumer",
    summary: "record that a resource uses a key (a key with consumers needs delete --force)",
    arguments: [KEY_ID],
    options: CONSUMER_OPTIONS,
    async run(client, args) {
      const res = await client.addConsumer(requiredPositional(args, "key ID"), consumerFlags(args));
      return printConsumers(res.key.id, res.consumers, res.changed ? "added" : "already there");
    },
  },
  {
    name: "remove-consumer",
    summary: "remove a consumer from a key",
    arguments: [KEY_ID],
    options: CONSUMER_OPTIONS,
    async run(client, args) {
      const res = await client.removeConsumer(requiredPositional(args, "key ID"), consumerFlags(args));
      return printConsumers(res.key.id, res.consumers, res.changed ? "removed" : "not there");
    },
  },
  {
    name: "consumers",
    summary: "list the consumers of a key",
    arguments: [KEY_ID],
    options: [],
    async run(client, args) {
      const id = requiredPositional(args, "key ID");
      return printConsumers(id, await client.listConsumers(id));
    },
  },
];

/** Each subcommand connects with the connection options, runs, and closes its client. */
const withClient = (sub: KeySubcommand): LeafDefinition => ({
  ...sub,
  connection: true,
  output: true,
  async run(args) {
    const client = await clientFrom(connectionSettings(args));
    try {
      return await sub.run(client, args);
    } finally {
      client.close();
    }
  },
});

export const command = defineCommand({
  name: "key",
  summary: "create, import, get, list, clone, rekey, grant, consume and delete keys",
  subcommands: SUBCOMMANDS.map(withClient),
});

// ---- helpers -------------------------------------------------------------

function kindOf(k: KeyMetadata): string {
  return k.secretType === "SYMMETRIC"
    ? `${k.algorithm}-${k.bitLength}`
    : `${k.secretType.toLowerCase()}${k.algorithm === "UNSPECIFIED" ? "" : ` ${k.algorithm}`}${k.bitLength > 0 ? `-${k.bitLength}` : ""}`;
}

const iso = (d: Date | undefined): string => d?.toISOString() ?? "-";
const dash = (s: string | undefined): string => (s === undefined || s === "" ? "-" : s);

const KEY_COLUMNS: Column<KeyMetadata>[] = [
  { header: "ID", value: (k) => k.id },
  { header: "PROJECT", value: (k) => k.project },
  { header: "SCOPE", value: (k) => dash(k.scope) },
  { header: "NAME", value: (k) => dash(k.name) },
  { header: "KIND", value: kindOf },
  { header: "STATE", value: (k) => k.state },
  { header: "CREATED", value: (k) => iso(k.createdAt) },
  { header: "EXPIRES", value: (k) => iso(k.expiresAt) },
  { header: "PARENT", value: (k) => dash(k.parentId) },
];

function keyLine(k: KeyMetadata): string {
  const parts = [
    k.id,
    `project=${k.project}`,
    `scope=${dash(k.scope)}`,
    `name=${dash(k.name)}`,
    kindOf(k),
    k.state,
  ];
  if (k.parentId !== undefined) parts.push(`parent=${k.parentId}`);
  if (k.createdAt !== undefined) parts.push(`created=${k.createdAt.toISOString()}`);
  if (k.updatedAt !== undefined && k.updatedAt.getTime() !== k.createdAt?.getTime())
    parts.push(`updated=${k.updatedAt.toISOString()}`);
  if (k.expiresAt !== undefined) parts.push(`expires=${k.expiresAt.toISOString()}`);
  return parts.join("  ");
}

const CONSUMER_COLUMNS: Column<Consumer>[] = [
  { header: "SERVICE", value: (c) => c.service },
  { header: "RESOURCE TYPE", value: (c) => c.resourceType },
  { header: "RESOURCE ID", value: (c) => c.resourceId },
  { header: "SINCE", value: (c) => iso(c.createdAt) },
];

function printConsumers(keyId: string, consumers: Consumer[], verb?: string): number {
  const m = outputMode();
  if (verb !== undefined && !m.json && m.field === undefined)
    process.stdout.write(`${verb}: key ${keyId} has ${consumers.length} consumer(s)\n`);
  emitList(consumers, consumers, { keyId, consumers }, CONSUMER_COLUMNS);
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

function printKey(key: KeyMetadata, verb?: string): number {
  emitRecord(keyJson(key), () => (verb !== undefined ? `${verb} ` : "") + keyLine(key) + "\n");
  return EXIT_OK;
}

function printGrant(g: Grant, verb: string): number {
  emitRecord(g, () => {
    const until = g.expiresAt?.toISOString() ?? "?";
    const revoked = g.revokedAt !== undefined ? `  revoked=${g.revokedAt.toISOString()}` : "";
    return `${verb} ${g.id}  key=${g.keyId}  grantee=${g.grantee}  until=${until}${revoked}\n`;
  });
  return EXIT_OK;
}

async function exists(path: string): Promise<boolean> {
  try {
    await fs.lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function emitMaterial(
  fetched: FetchedKey,
  format: string,
  out: string | undefined,
  json: boolean,
  force: boolean,
): Promise<void> {
  if (json) {
    const encoded = fetched.material.toString(format === "base64" ? "base64" : "hex");
    const text = JSON.stringify(fetchedKeyJson(fetched, encoded, format)) + "\n";
    if (out !== undefined) await writePrivateFile(out, Buffer.from(text), force);
    else process.stdout.write(text);
    return;
  }
  const bytes =
    format === "raw"
      ? fetched.material
      : Buffer.from(fetched.material.toString(format === "base64" ? "base64" : "hex") + "\n");
  if (out !== undefined) {
    await writePrivateFile(out, bytes, force);
  } else {
    await new Promise<void>((resolve, reject) =>
      process.stdout.write(bytes, (e) => (e ? reject(e) : resolve())),
    );
  }
  if (bytes !== fetched.material) bytes.fill(0);
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
