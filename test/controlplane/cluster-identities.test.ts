/**
 * Real peer processes on loopback sharing one control state (issue 9 items 6 and 7): identities issued
 * through one peer work on another, a revocation committed through any peer is enforced by every peer,
 * and PeerService admits only current members' certificates, each sending as itself. The second peer
 * joins through the NOT ATTESTED test path (AddPeerUnattested, behind allowUnattestedMembersForTests)
 * until the attested join exists.
 */
import test from "ava";
import * as grpc from "@grpc/grpc-js";
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { LockboxClientError } from "../../src/client/index.js";
import { issuePeerCertificate } from "../../src/pki/certificate-authority.js";
import { loadPeerProto } from "../../src/raft/peer-proto.js";
import { encodeCommand } from "../../src/controlplane/control-command.js";
import { kekMetaKey } from "../../src/keys/project-keks.js";
import { openPeerStore } from "../../src/store/peer-store.js";
import { spawnPeer, type PeerProcess } from "../helpers/peer-process.js";
import { UNATTESTED_FLAG, addUnattestedPeer } from "../helpers/unattested-member.js";
import { waitFor } from "../helpers/wait-for.js";

test.serial.before(async (t) => {
  const a = await spawnPeer({ peerId: "peer-a", configPatch: UNATTESTED_FLAG });
  const b = await addUnattestedPeer(a, "peer-b", "zone-2");
  (t.context as { a: PeerProcess; b: PeerProcess }) = { a, b };
  // b holds the control state once it lists itself as a learner.
  await waitFor(
    async () => {
      const peers = await b
        .client()
        .adminCall<{ peers: { peer_id: string; suffrage: string }[] }>("ListPeers", {});
      return peers.peers.some((p) => p.peer_id === "peer-b" && p.suffrage !== "none");
    },
    30_000,
    "peer-b listed as a raft member",
  );
});

test.after.always(async (t) => {
  const { a, b } = t.context as { a?: PeerProcess; b?: PeerProcess };
  await b?.teardown();
  await a?.teardown();
});

const peers = (t: { context: unknown }): { a: PeerProcess; b: PeerProcess } =>
  t.context as { a: PeerProcess; b: PeerProcess };

test.serial("an identity issued through one peer works on another peer of the cluster", async (t) => {
  const { a, b } = peers(t);
  const svc = await a.issueIdentity("svc-shared", "service", ["p1"]);
  const onB = b.client(svc);
  const created = await onB.createKey({ project: "p1", scope: "s", name: "vol-1", bitLength: 256 });
  t.truthy(created.id);
  const listed = await b
    .client()
    .adminCall<{ identities: { name: string; serials: string[] }[] }>("ListIdentities", {});
  t.true(listed.identities.some((i) => i.name === "svc-shared" && i.serials.length === 1));
});

test.serial(
  "an identity revoked through one peer is refused by every peer once the revocation commits",
  async (t) => {
    const { a, b } = peers(t);
    const svc = await a.issueIdentity("svc-revoked", "service", ["p2"]);
    await b.client(svc).createKey({ project: "p2", scope: "s", name: "k", bitLength: 256 });
    // Revoked through b, which forwards the proposal to the leader a.
    const res = await b
      .client()
      .adminCall<{ revoked_serials: string[] }>("RevokeIdentity", { name: "svc-revoked", reason: "test" });
    t.is(res.revoked_serials.length, 1);
    for (const p of [a, b]) {
      const revoked = p.client(svc, { attemptsMax: 1 });
      await waitFor(
        async () => {
          const err = await revoked.createKey({ project: "p2", scope: "s", name: "k2", bitLength: 256 }).then(
            () => null,
            (e: unknown) => e,
          );
          return err instanceof LockboxClientError && err.code === "UNAUTHENTICATED";
        },
        10_000,
        "the revoked identity refused UNAUTHENTICATED",
      );
      t.pass(`${p.address} refuses the revoked identity`);
    }
  },
);

test.serial(
  "PeerService refuses a client without a member certificate, a member claiming another id, and a non-member",
  async (t) => {
    const { a, b } = peers(t);
    const ca = {
      certificatePem: await fs.readFile(join(a.dir, "ca.crt"), "utf8"),
      privateKeyPem: await fs.readFile(join(a.dir, "ca.key"), "utf8"),
    };
    const command = encodeCommand({ type: "policy.remove", name: "nope" });
    const propose = async (cert: string, key: string, from: string): Promise<grpc.ServiceError | null> => {
      const creds = grpc.credentials.createSsl(
        Buffer.from(ca.certificatePem),
        Buffer.from(key),
        Buffer.from(cert),
      );
      const client = new (loadPeerProto().PeerService)(a.address, creds);
      try {
        return await new Promise((resolve) =>
          (client as unknown as { Propose: Function }).Propose(
            { from, command },
            { deadline: Date.now() + 5_000 },
            (err: grpc.ServiceError | null) => resolve(err),
          ),
        );
      } finally {
        client.close();
      }
    };
    // A client identity (the admin's) is not a peer certificate.
    const admin = await propose(
      await fs.readFile(a.admin.cert, "utf8"),
      await fs.readFile(a.admin.key, "utf8"),
      "peer-b",
    );
    t.is(admin?.code, grpc.status.UNAUTHENTICATED);
    // b's own certificate, sending as a.
    const bCert = await fs.readFile(join(b.dir, "peer.crt"), "utf8");
    const bKey = await fs.readFile(join(b.dir, "peer.key"), "utf8");
    const claim = await propose(bCert, bKey, "peer-a");
    t.is(claim?.code, grpc.status.PERMISSION_DENIED);
    t.regex(claim?.details ?? "", /only as itself/);
    // A peer certificate of the cluster CA for an id that is no member.
    const stranger = await issuePeerCertificate(ca, { peerId: "peer-x" });
    const outsider = await propose(stranger.certificatePem, stranger.privateKeyPem, "peer-x");
    t.is(outsider?.code, grpc.status.PERMISSION_DENIED);
    t.regex(outsider?.details ?? "", /not a member/);
    // b as itself is admitted: the leader answers with the state machine's refusal of the command.
    t.is(await propose(bCert, bKey, "peer-b"), null);
  },
);

test.serial("a removed peer's certificate is revoked and refused by the remaining members", async (t) => {
  const { a, b } = peers(t);
  const res = await a
    .client()
    .adminCall<{ peer: { state: string } }>("RemovePeer", { peer_id: "peer-b", reason: "test" });
  t.is(res.peer.state, "removed");
  const ca = await fs.readFile(join(a.dir, "ca.crt"));
  const creds = grpc.credentials.createSsl(
    ca,
    await fs.readFile(join(b.dir, "peer.key")),
    await fs.readFile(join(b.dir, "peer.crt")),
  );
  const client = new (loadPeerProto().PeerService)(a.address, creds);
  t.teardown(() => client.close());
  const err = await new Promise<grpc.ServiceError | null>((resolve) =>
    (client as unknown as { Propose: Function }).Propose(
      { from: "peer-b", command: encodeCommand({ type: "policy.remove", name: "nope" }) },
      { deadline: Date.now() + 5_000 },
      (e: grpc.ServiceError | null) => resolve(e),
    ),
  );
  t.is(err?.code, grpc.status.PERMISSION_DENIED);
  t.regex(err?.details ?? "", /revoked/);
  await waitFor(
    async () => {
      const list = await a
        .client()
        .adminCall<{ peers: { peer_id: string; suffrage: string }[] }>("ListPeers", {});
      return list.peers.find((p) => p.peer_id === "peer-b")?.suffrage === "none";
    },
    10_000,
    "peer-b out of the raft configuration",
  );
  t.pass("the autopilot took the removed peer out of the raft configuration");
});

test.serial(
  "project KEKs live in the control state: a KEK created through either peer is kept in no peer's own store",
  async (t) => {
    const { a, b } = peers(t);
    const svc = await a.issueIdentity("svc-kek", "service", ["shared"]);
    await a.client(svc).createKey({ project: "shared", scope: "s", name: "on-a", bitLength: 256 });
    await a.kill("SIGKILL");
    await b.kill("SIGKILL");
    for (const p of [a, b]) {
      const store = await openPeerStore(join(p.dir, "data"));
      try {
        t.is(await store.get("meta", kekMetaKey("shared")), undefined, `${p.dir} keeps no local KEK`);
        t.is(await store.get("meta", kekMetaKey("p1")), undefined);
      } finally {
        await store.close();
      }
    }
  },
);
