/**
 * TEST ONLY: loads test/proto/lockbox/test/v1/control.proto, the API of the test control-node process.
 * No lockbox peer serves it.
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";

// This module runs from dist/test/raft-process/control-node/, four levels below the repository root.
const PROTO_DIR = fileURLToPath(new URL("../../../../test/proto", import.meta.url));

let cached: grpc.ServiceClientConstructor | undefined;

export function loadControlService(): grpc.ServiceClientConstructor {
  if (cached !== undefined) return cached;
  const def = protoLoader.loadSync("lockbox/test/v1/control.proto", {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    lockbox: { test: { v1: { ControlService: grpc.ServiceClientConstructor } } };
  };
  cached = pkg.lockbox.test.v1.ControlService;
  return cached;
}

/** Metadata key carrying the known leader's id on a FAILED_PRECONDITION "not leader" answer. */
export const LEADER_HINT_METADATA_KEY = "lockbox-leader-hint";
