/**
 * Loads proto/lockbox/v1/join.proto at run time (as src/raft/peer-proto.ts
 * does for peer.proto) and exposes the JoinService definition. uint64 fields
 * arrive as JS numbers (a CMK epoch stays far below 2^53; join-wire.ts checks).
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";

// This module runs from dist/src/attestation/, three levels below the repository root.
const PROTO_DIR = fileURLToPath(new URL("../../../proto", import.meta.url));

export const JOIN_SERVICE_NAME = "lockbox.v1.JoinService";

export const ATTESTATION_SERVICE_NAME = "lockbox.v1.AttestationService";

interface JoinProtos {
  JoinService: grpc.ServiceClientConstructor;
  AttestationService: grpc.ServiceClientConstructor;
}

let cached: JoinProtos | undefined;

export function loadJoinService(): grpc.ServiceClientConstructor {
  return loadJoinProtos().JoinService;
}

export function loadAttestationService(): grpc.ServiceClientConstructor {
  return loadJoinProtos().AttestationService;
}

function loadJoinProtos(): JoinProtos {
  if (cached !== undefined) return cached;
  const def = protoLoader.loadSync("lockbox/v1/join.proto", {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    lockbox: { v1: JoinProtos };
  };
  cached = { JoinService: pkg.lockbox.v1.JoinService, AttestationService: pkg.lockbox.v1.AttestationService };
  return cached;
}
