/**
 * The composition of a peer's CMK epochs (DESIGN.md §5 "Rotation"): the epoch keeper that fetches,
 * seals, activates and forgets epochs as the control state says (src/controlplane/cmk-epoch-keeper.ts),
 * the MasterKeyDeliveryService through which members fetch epochs from this peer by attestation
 * (src/attestation/epoch-delivery.ts), and the rotation the admin API starts here
 * (src/controlplane/master-key-rotation.ts).
 */
import type * as grpc from "@grpc/grpc-js";
import { EpochDeliverer, fetchEpoch } from "../attestation/epoch-delivery.js";
import { GrpcEpochFetchChannel, epochDeliveryService } from "../attestation/epoch-delivery-grpc.js";
import type { PeerConfig } from "../config/peer-config.js";
import { CmkEpochKeeper } from "../controlplane/cmk-epoch-keeper.js";
import { ControlJoinAuthority } from "../controlplane/control-join-authority.js";
import type { ControlPlane } from "../controlplane/control-plane.js";
import { MasterKeyRotation } from "../controlplane/master-key-rotation.js";
import type { MasterKeyProvider } from "../crypto/master-key-provider.js";
import { nodeRandomSource } from "../crypto/random-source.js";
import { peerDialAddress } from "../net/peer-dial.js";
import { PeerCertificateVerifier } from "../pki/peer-certificate-verifier.js";
import type { PeerTpm } from "../sealing/peer-tpm.js";
import type { MasterKeyAdminApi } from "../server/master-key-admin-handlers.js";
import type { Clock } from "../time/clock.js";
import { rewrapMasterKeyCanary, type PeerCore } from "./peer-core.js";

export interface MasterKeyEpochs {
  readonly service: { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation };
  readonly admin: MasterKeyAdminApi;
  stop(): Promise<void>;
}

export function startMasterKeyEpochs(p: {
  config: PeerConfig;
  control: ControlPlane;
  core: PeerCore;
  protector: MasterKeyProvider;
  tpm: PeerTpm | undefined;
  tls: { caCertificatePem: string; certificatePem: string; privateKeyPem: string };
  clock: Clock;
  log: (line: string) => void;
}): MasterKeyEpochs {
  const { control, config, tpm } = p;
  const { barrier, store } = p.core;
  const channel = new GrpcEpochFetchChannel({
    tls: p.tls,
    addressOf: (id) => {
      const address = control.state.member(id)?.address;
      return address === undefined ? undefined : peerDialAddress(config.peerDialOverrides, id, address);
    },
  });
  const persist = p.protector.persistEpochs?.bind(p.protector);
  const keeper = new CmkEpochKeeper({
    control,
    barrier,
    ...(tpm !== undefined && persist !== undefined
      ? {
          fetch: (holderId: string, epoch: number) =>
            fetchEpoch({
              useTpm: (fn) => tpm.use(fn),
              selfId: config.peerId,
              holderId,
              epoch,
              channel,
            }),
          persist,
        }
      : {}),
    rewrapCanary: () => rewrapMasterKeyCanary(store, barrier),
    log: p.log,
  });
  const authority = new ControlJoinAuthority(control, barrier, p.clock, config.clusterId);
  const deliverer = new EpochDeliverer(
    {
      member: (id) => authority.member(id),
      policy: (name) => authority.policy(name),
      releaseEpoch: (epoch) => {
        const record = control.state.cmkEpochs().find((e) => e.epoch === epoch);
        // A retired epoch is never handed out again; an unknown one never was an epoch.
        if (record === undefined || record.state === "retired" || barrier.sealed)
          return Promise.resolve(undefined);
        return Promise.resolve(barrier.releaseKey(epoch));
      },
    },
    { audit: p.core.audit, log: p.log },
  );
  const service = epochDeliveryService({
    deliverer,
    verifier: new PeerCertificateVerifier(p.tls.caCertificatePem),
    admitCaller: (peer) => control.admitPeer(peer),
  });
  const rotation = new MasterKeyRotation({
    control,
    barrier,
    keeper,
    clusterId: config.clusterId,
    clock: p.clock,
    random: nodeRandomSource,
    log: p.log,
  });
  keeper.start();
  return {
    service,
    admin: { rotation, barrier, peerId: config.peerId },
    async stop() {
      await rotation.stop();
      await keeper.stop();
      channel.close();
    },
  };
}
