/**
 * The lockbox protos as the server loads them at runtime, with the options
 * the generated types in src/gen/ were made with: snake_case fields, enums as
 * names (an unknown enum number stays a number, which the handlers refuse),
 * 64-bit integers as strings, defaults filled in.
 */
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";

/** The repository's proto/ directory; this file runs from dist/src/server/. */
export const PROTO_DIR = fileURLToPath(new URL("../../../proto", import.meta.url));

const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

export const KEY_SERVICE_NAME = "lockbox.v1.KeyService";
export const ADMIN_SERVICE_NAME = "lockbox.v1.AdminService";

export interface ServerProtos {
  /** Both files in one definition: what reflection describes. */
  readonly all: protoLoader.PackageDefinition;
  readonly keyService: protoLoader.ServiceDefinition;
  readonly adminService: protoLoader.ServiceDefinition;
}

let loaded: ServerProtos | undefined;

/** Parses the protos once per process. */
export function serverProtos(): ServerProtos {
  if (loaded === undefined) {
    const all = protoLoader.loadSync(["lockbox/v1/keys.proto", "lockbox/v1/admin.proto"], LOADER_OPTIONS);
    const keyService = all[KEY_SERVICE_NAME];
    const adminService = all[ADMIN_SERVICE_NAME];
    if (!isService(keyService) || !isService(adminService)) {
      throw new Error(`${PROTO_DIR} does not define ${KEY_SERVICE_NAME} and ${ADMIN_SERVICE_NAME}`);
    }
    loaded = { all, keyService, adminService };
  }
  return loaded;
}

function isService(d: unknown): d is protoLoader.ServiceDefinition {
  return typeof d === "object" && d !== null && !("format" in d) && Object.keys(d).length > 0;
}
