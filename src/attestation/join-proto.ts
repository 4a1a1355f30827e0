/**
 * Loads proto/lockbox/v1/join.proto at run time (as src/raft/peer-proto.ts
 * does for peer.proto) and exposes its services: JoinService, AttestationService (re-quotes) and
 * MasterKeyDeliveryService (epoch fetches). uint64 fields
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
  MasterKeyDeliveryService: grpc.ServiceClientConstructor;
}

let cached: JoinProtos | undefined;

export function loadJoinService(): grpc.ServiceClientConstructor {
  return loadJoinProtos().JoinService;
}

export function loadAttestationService(): grpc.ServiceClientConstructor {
  return loadJoinProtos().AttestationService;
}

export function loadMasterKeyDeliveryService(): grpc.ServiceClientConstructor {
  return loadJoinProtos().MasterKeyDeliveryService;
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
  const { JoinService, AttestationService, MasterKeyDeliveryService } = pkg.lockbox.v1;
  cached = { JoinService, AttestationService, MasterKeyDeliveryService };
  return cached;
}
