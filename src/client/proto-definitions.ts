/**
 * Loads the lockbox protos at runtime with the same options the generated
 * types (src/gen/, `npm run gen`) were made with, so the objects grpc-js hands
 * us have exactly the shapes those types describe: snake_case fields, enums
 * as names, 64-bit integers as strings, defaults filled in.
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";

import type { ProtoGrpcType as AdminProto } from "../gen/admin.js";
import type { ProtoGrpcType as KeysProto } from "../gen/keys.js";

/** The repository's proto/ directory; this file runs from dist/src/client/. */
export const PROTO_DIR = fileURLToPath(new URL("../../../proto", import.meta.url));

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

export interface LockboxProtos {
  keys: KeysProto;
  admin: AdminProto;
}

let loaded: LockboxProtos | undefined;

/** Parses the protos once per process. */
export function lockboxProtos(): LockboxProtos {
  if (loaded === undefined) {
    const keys = protoLoader.loadSync("lockbox/v1/keys.proto", LOADER_OPTIONS);
    const admin = protoLoader.loadSync("lockbox/v1/admin.proto", LOADER_OPTIONS);
    loaded = {
      keys: grpc.loadPackageDefinition(keys) as unknown as KeysProto,
      admin: grpc.loadPackageDefinition(admin) as unknown as AdminProto,
    };
  }
  return loaded;
}
