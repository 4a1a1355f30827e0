/**
 * Loads proto/lockbox/v1/peer.proto at run time (no generated code needed at run time) and exposes the
 * PeerService definition. uint64 fields arrive as JS numbers (`longs: Number`): raft indexes and terms
 * stay far below 2^53, and every decoder checks Number.isSafeInteger before trusting one.
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";

// This module runs from dist/src/raft/, three levels below the repository root.
const PROTO_DIR = fileURLToPath(new URL("../../../proto", import.meta.url));

export const PEER_SERVICE_NAME = "lockbox.v1.PeerService";

export interface PeerProto {
  PeerService: grpc.ServiceClientConstructor;
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
    lockbox: { v1: { PeerService: grpc.ServiceClientConstructor } };
  };
  cached = { PeerService: pkg.lockbox.v1.PeerService };
  return cached;
}
