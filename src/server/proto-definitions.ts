/**
 * The server edge's one proto loader: the lockbox protos as the server loads
 * them at runtime, with the options the generated types in src/gen/ were made
 * with: snake_case fields, enums as names (an unknown enum number stays a
 * number, which the handlers refuse), 64-bit integers as strings, defaults
 * filled in. From the same load come the message descriptors the strict wire
 * check reads and each method's declared idempotency.
 *
 * The .proto files are parsed at build time (scripts/gen-proto-types.mjs
 * writes src/gen/edge-protos.ts); a starting peer builds the definitions from
 * that JSON, not from the files.
 */
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";
import { EDGE_PROTOS_JSON } from "../gen/edge-protos.js";
import type { MessageDescriptor } from "./strict-wire.js";

/** The repository's proto/ directory; this file runs from dist/src/server/. */
export const PROTO_DIR = fileURLToPath(new URL("../../../proto", import.meta.url));

const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

const LOCKBOX_PACKAGE = "lockbox.v1";
export const KEY_SERVICE_NAME = "lockbox.v1.KeyService";
export const ADMIN_SERVICE_NAME = "lockbox.v1.AdminService";

export interface ServerProtos {
  /** Both files in one definition: what reflection describes. */
  readonly all: protoLoader.PackageDefinition;
  readonly keyService: protoLoader.ServiceDefinition;
  readonly adminService: protoLoader.ServiceDefinition;
  /** A message's descriptor by full name ("google.protobuf.Timestamp"), for the strict wire check. */
  readonly messageDescriptor: (typeName: string) => MessageDescriptor | undefined;
}

/** As declared in the proto by `option idempotency_level` (google.protobuf.MethodOptions). */
export type Idempotency = "NO_SIDE_EFFECTS" | "IDEMPOTENT" | "IDEMPOTENCY_UNKNOWN";

/** The idempotency a method declares; anything unrecognised counts as unknown (never retried). */
export function idempotencyOf(method: protoLoader.MethodDefinition<object, object>): Idempotency {
  const level = (method.options as { idempotency_level?: unknown } | undefined)?.idempotency_level;
  return level === "NO_SIDE_EFFECTS" || level === "IDEMPOTENT" ? level : "IDEMPOTENCY_UNKNOWN";
}

let loaded: ServerProtos | undefined;

/** Builds the definitions once per process. */
export function serverProtos(): ServerProtos {
  if (loaded === undefined) {
    const all = protoLoader.fromJSON(JSON.parse(EDGE_PROTOS_JSON) as object, LOADER_OPTIONS);
    const keyService = all[KEY_SERVICE_NAME];
    const adminService = all[ADMIN_SERVICE_NAME];
    if (!isService(keyService) || !isService(adminService)) {
      throw new Error(
        `src/gen/edge-protos.ts (from ${PROTO_DIR}) does not define ${KEY_SERVICE_NAME} and ${ADMIN_SERVICE_NAME}`,
      );
    }
    const messageDescriptor = (typeName: string): MessageDescriptor | undefined => {
      // proto-loader keeps a field's type name as written: fully qualified ("google.protobuf.Timestamp")
      // or relative to the lockbox package ("BatchedCall" in lockbox.v1.CallBatch).
      const name = typeName.startsWith(".") ? typeName.slice(1) : typeName;
      const entry = all[name] ?? all[`${LOCKBOX_PACKAGE}.${name}`];
      return entry !== undefined && "format" in entry && entry.format === "Protocol Buffer 3 DescriptorProto"
        ? (entry.type as MessageDescriptor)
        : undefined;
    };
    loaded = { all, keyService, adminService, messageDescriptor };
  }
  return loaded;
}

function isService(d: unknown): d is protoLoader.ServiceDefinition {
  return typeof d === "object" && d !== null && !("format" in d) && Object.keys(d).length > 0;
}
