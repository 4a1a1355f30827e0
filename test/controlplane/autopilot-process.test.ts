/**
 * The membership autopilot with real peer processes (issue 9 item 1): learners in new zones are
 * promoted until the voter target (3) is met, and a voter killed with SIGKILL that does not come back
 * is replaced by a healthy learner, then removed. Peers join by the NOT ATTESTED test path
 * (AddPeerUnattested, allowUnattestedMembersForTests) until the attested join exists.
 */
import test from "ava";
import { spawnPeer, type PeerProcess } from "../helpers/peer-process.js";
import { UNATTESTED_FLAG, addUnattestedPeer } from "../helpers/unattested-member.js";
import { waitFor } from "../helpers/wait-for.js";

type Listed = { peers: { peer_id: string; suffrage: string; state: string }[]; leader: string };

test("the autopilot promotes learners to the voter target and replaces a voter that died", async (t) => {
  const started: PeerProcess[] = [];
  t.teardown(async () => {
    for (const p of started.reverse()) await p.teardown();
  });
  const a = await spawnPeer({ peerId: "peer-a", configPatch: UNATTESTED_FLAG });
  started.push(a);
  started.push(await addUnattestedPeer(a, "peer-b", "zone-2"));
  const c = await addUnattestedPeer(a, "peer-c", "zone-3");
  started.push(c);
  const admin = a.client();
  const list = (): Promise<Listed> => admin.adminCall<Listed>("ListPeers", {});
  const voters = async (): Promise<string[]> =>
    (await list()).peers
      .filter((p) => p.suffrage === "voter")
      .map((p) => p.peer_id)
      .sort();

  // 16 s alone; the bound is for a CI machine running other multi-process tests beside it.
  // On failure: what peer-a lists, each peer's own raft view, and their logs (the failure is silent otherwise).
  const diagnose = async (): Promise<void> => {
    t.log("ListPeers on peer-a:", JSON.stringify(await list().catch((x: unknown) => String(x))));
    for (const p of started) {
      const raft = await p
        .client()
        .getStatus()
        .then((s) => JSON.stringify(s.raft))
        .catch((x: unknown) => String(x));
      t.log(p.dir, raft, "\n", (await p.log()).split("\n").slice(-25).join("\n"));
    }
  };
  await waitFor(
    async () => (await voters()).join() === "peer-a,peer-b,peer-c",
    90_000,
    "voters peer-a, peer-b, peer-c",
  ).catch(async (e) => {
    await diagnose();
    throw e;
  });
  t.pass("three voters in three zones");

  await c.kill("SIGKILL");
  started.push(await addUnattestedPeer(a, "peer-d", "zone-3"));
  // d is promoted (the healthy voters are below target), then the dead c leaves the configuration.
  await waitFor(
    async () => (await voters()).join() === "peer-a,peer-b,peer-d",
    60_000,
    "voters peer-a, peer-b, peer-d",
  ).catch(async (e) => {
    await diagnose();
    throw e;
  });
  const final = await list();
  // c stays an (active) member: it left the voters, and replicates as a learner should it come back.
  t.not(final.peers.find((p) => p.peer_id === "peer-c")?.suffrage, "voter");
  t.is(final.leader, "peer-a");
});
