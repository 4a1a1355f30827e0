/**
 * NOT ATTESTED, FOR TESTS until the attested join (`lockbox join`) exists: makes the directory of a
 * peer that will join `founder`'s cluster (same cluster id, ring parameters, CA certificate and
 * development master key; its own peer certificate from the founder's CA; an empty store, so it waits
 * to be added), serves it, and has the founder add it with AdminService.AddPeerUnattested, which the
 * founder's config must allow (allowUnattestedMembersForTests).
 */
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { issuePeerCertificate } from "../../src/pki/certificate-authority.js";
import { spawnPeer, startPeerInDir, type PeerProcess } from "./peer-process.js";
import { waitFor } from "./wait-for.js";

export const UNATTESTED_FLAG = { allowUnattestedMembersForTests: true };

export async function joinerDirectory(founder: PeerProcess, peerId: string): Promise<string> {
  const dir = await fs.mkdtemp(join(tmpdir(), "lockbox-joiner-"));
  const config = JSON.parse(await fs.readFile(join(founder.dir, "config.json"), "utf8")) as Record<
    string,
    unknown
  >;
  const ca = {
    certificatePem: await fs.readFile(join(founder.dir, "ca.crt"), "utf8"),
    privateKeyPem: await fs.readFile(join(founder.dir, "ca.key"), "utf8"),
  };
  const peer = await issuePeerCertificate(ca, { peerId });
  for (const f of ["ca.crt", "admin.crt", "admin.key", "master-key.dev"]) {
    await fs.copyFile(join(founder.dir, f), join(dir, f));
  }
  await fs.writeFile(join(dir, "peer.crt"), peer.certificatePem);
  await fs.writeFile(join(dir, "peer.key"), peer.privateKeyPem, { mode: 0o600 });
  const foundingId = config.peerId as string;
  // No ca.key: the joiner signs with the CA key the control state holds, wrapped under the CMK.
  await fs.writeFile(
    join(dir, "config.json"),
    JSON.stringify({
      ...config,
      peerId,
      paths: { ...(config.paths as object), caKey: "no-ca-key-here" },
      seedPeers: { [foundingId]: founder.address },
      allowUnattestedMembersForTests: undefined,
    }),
    { mode: 0o600 },
  );
  return dir;
}

/** Starts a joiner for `founder`'s cluster and adds it (unattested) through the founder. */
export async function addUnattestedPeer(
  founder: PeerProcess,
  peerId: string,
  zone: string,
): Promise<PeerProcess> {
  const dir = await joinerDirectory(founder, peerId);
  const peer = await startPeerInDir(dir);
  const admin = founder.client();
  await admin.adminCall("AddPeerUnattested", {
    peer_id: peerId,
    address: peer.address,
    zone,
    weight: 1,
    certificate_pem: await fs.readFile(join(dir, "peer.crt"), "utf8"),
  });
  return peer;
}

/**
 * Three members, peer-a (founding, with `configPatch` and the unattested flag), peer-b and peer-c in
 * zones 2 and 3, added unattested; resolves once all three are active. Each is pushed onto `started`
 * as soon as it runs, so the caller's teardown stops it even if a later step fails.
 */
export async function threeUnattestedPeers(
  started: PeerProcess[],
  configPatch: Record<string, unknown>,
): Promise<[PeerProcess, PeerProcess, PeerProcess]> {
  const a = await spawnPeer({ peerId: "peer-a", configPatch: { ...UNATTESTED_FLAG, ...configPatch } });
  started.push(a);
  const b = await addUnattestedPeer(a, "peer-b", "zone-2");
  started.push(b);
  const c = await addUnattestedPeer(a, "peer-c", "zone-3");
  started.push(c);
  const admin = a.client();
  await waitFor(
    async () => {
      const listed = await admin.adminCall<{ peers: { state: string }[] }>("ListPeers", {});
      return listed.peers.filter((p) => p.state === "active").length === 3;
    },
    90_000,
    "three active members",
  );
  return [a, b, c];
}
