/**
 * Loads lockbox.v1.ReplicationService from proto/lockbox/v1/peer.proto at run time, with the options the
 * raft transport uses (src/raft/peer-proto.ts): uint64 request ids arrive as numbers (ids stay below
 * 2^53 and the codec checks Number.isSafeInteger), oneofs name their set field in `kind`. Unlike
 * there, fields left at their proto3 default arrive absent (repeated ones as empty lists): filling in
 * defaults made a new empty Buffer for every put's record before the real one replaced it.
 * replica-wire-codec.ts reads an absent field as its default, which is what proto3 means by it.
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";

// This module runs from dist/src/replication/, three levels below the repository root.
const PROTO_DIR = fileURLToPath(new URL("../../../proto", import.meta.url));

export const REPLICATION_SERVICE_NAME = "lockbox.v1.ReplicationService";

let cached: grpc.ServiceClientConstructor | undefined;

export function loadReplicationService(): grpc.ServiceClientConstructor {
  if (cached !== undefined) return cached;
  const def = protoLoader.loadSync("lockbox/v1/peer.proto", {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: false,
    arrays: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    lockbox: { v1: { ReplicationService: grpc.ServiceClientConstructor } };
  };
  cached = pkg.lockbox.v1.ReplicationService;
  return cached;
}
