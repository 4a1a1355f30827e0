/**
 * Loads proto/lockbox/v1/peer.proto at run time (no generated code needed at run time) and exposes the
 * two service definitions. uint64 fields arrive as JS numbers (`longs: Number`): raft indexes and terms
 * stay far below 2^53, and every decoder checks Number.isSafeInteger before trusting one.
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";

// This module runs from dist/src/control/, three levels below the repository root.
const PROTO_DIR = fileURLToPath(new URL("../../../proto", import.meta.url));

export interface PeerProto {
  PeerService: grpc.ServiceClientConstructor;
  ControlService: grpc.ServiceClientConstructor;
}

let cached: PeerProto | undefined;

export function loadPeerProto(): PeerProto {
  if (cached !== undefined) return cached;
  const def = protoLoader.loadSync("lockbox/v1/peer.proto", {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    lockbox: {
      v1: { PeerService: grpc.ServiceClientConstructor; ControlService: grpc.ServiceClientConstructor };
    };
  };
  cached = { PeerService: pkg.lockbox.v1.PeerService, ControlService: pkg.lockbox.v1.ControlService };
  return cached;
}

/** Metadata key carrying the known leader's id on a FAILED_PRECONDITION "not leader" answer. */
export const LEADER_HINT_METADATA_KEY = "lockbox-leader-hint";
