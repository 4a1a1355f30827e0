/**
 * Child process for grpc-peer-link-sigkill.test.ts: peer argv[3] of the ring argv[4] (comma-separated
 * ids) serves its real Replica on the real LevelDB in argv[2] through a ReplicationPeerService on
 * 127.0.0.1, with the peer TLS material in argv[2]/tls (ca.crt, peer.crt, peer.key). It prints
 * "PORT <n>" once listening, and "BATCH <items>" for every batch it receives; with argv[5] = "hold"
 * it never answers one (a peer that received batches and has not synced them when it is killed).
 */
import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { peerGrpcOptions } from "../../src/raft/grpc-peer-transport.js";
import { LevelReplicaStore } from "../../src/replication/leveldb-replica-store.js";
import type { ReplicaBatch, ReplicaBatchReply } from "../../src/replication/peer-link.js";
import { Replica } from "../../src/replication/replica.js";
import { ReplicationPeerService } from "../../src/replication/replication-peer-service.js";
import { loadReplicationService } from "../../src/replication/replication-proto.js";
import { openPeerStore } from "../../src/store/peer-store.js";
import { CertificateRequestingServerCredentials } from "../raft-process/peer-tls.js";
import { PART_POWER, placementFor } from "./grpc-replication-cluster.js";

const [dir, id, idsCsv, mode] = process.argv.slice(2) as [string, string, string, string | undefined];
const ids = idsCsv.split(",");
const placement = placementFor(ids);
const tlsDir = join(dir, "tls");
const material = {
  caCertificatePem: readFileSync(join(tlsDir, "ca.crt"), "utf8"),
  certificatePem: readFileSync(join(tlsDir, "peer.crt"), "utf8"),
  privateKeyPem: readFileSync(join(tlsDir, "peer.key"), "utf8"),
};
const store = await openPeerStore(join(dir, "store"));
const replica = new Replica({
  self: id,
  store: new LevelReplicaStore(store, PART_POWER),
  partitionOfKey: (k) => placement.partitionOfKey(k),
  partitions: placement.partitions,
  nowMs: () => Date.now(),
  reclaimAgeMs: 3_600_000,
  bucketBits: 4,
});
await replica.open();
const service = new ReplicationPeerService({
  self: id,
  caCertificatePem: material.caCertificatePem,
  replica: {
    handle: (batch: ReplicaBatch): Promise<ReplicaBatchReply> => {
      process.stdout.write(`BATCH ${batch.items.length}\n`);
      return mode === "hold" ? new Promise(() => {}) : replica.handle(batch);
    },
  },
  admitPeer: ({ peerId }) => (ids.includes(peerId) ? null : `${peerId} is not a member`),
});
const server = new grpc.Server(peerGrpcOptions());
server.addService(loadReplicationService().service, service.handlers());
server.bindAsync("127.0.0.1:0", new CertificateRequestingServerCredentials(material), (err, port) => {
  if (err) throw err;
  process.stdout.write(`PORT ${port}\n`);
});
