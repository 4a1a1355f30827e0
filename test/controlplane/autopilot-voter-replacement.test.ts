/**
 * Issue 9 acceptance, with five real peer processes: "the autopilot keeps the voter target after a voter
 * is killed and does not come back". Voters a, b, c and learners d, e; voter c is killed with SIGKILL.
 * Not before the configured unreachable threshold (autopilot.deadVoterMs), the leader promotes a healthy
 * learner and takes c out of the voters; at every observation the voters still alive make a quorum of
 * the voter set. Peers join by the NOT ATTESTED test path (AddPeerUnattested,
 * allowUnattestedMembersForTests): attestation is not what this test is about.
 */
import test from "ava";
import { spawnPeer, type PeerProcess } from "../helpers/peer-process.js";
import { UNATTESTED_FLAG, addUnattestedPeer } from "../helpers/unattested-member.js";
import { waitFor } from "../helpers/wait-for.js";

type Listed = { peers: { peer_id: string; suffrage: string; state: string }[]; leader: string };

const DEAD_VOTER_MS = 4_000;
const AUTOPILOT = { voterTarget: 3, stabilizationMs: 1_000, deadVoterMs: DEAD_VOTER_MS };

test("a voter killed with SIGKILL is replaced by a learner after autopilot.deadVoterMs, never below a quorum of live voters", async (t) => {
  t.timeout(240_000);
  const started: PeerProcess[] = [];
  t.teardown(async () => {
    for (const p of started.reverse()) await p.teardown();
  });
  // Joiners copy the founder's config.json, autopilot section included.
  const a = await spawnPeer({ peerId: "peer-a", configPatch: { ...UNATTESTED_FLAG, autopilot: AUTOPILOT } });
  started.push(a);
  const peers = new Map<string, PeerProcess>([["peer-a", a]]);
  for (const [id, zone] of [
    ["peer-b", "zone-2"],
    ["peer-c", "zone-3"],
    ["peer-d", "zone-2"],
    ["peer-e", "zone-3"],
  ] as const) {
    const p = await addUnattestedPeer(a, id, zone);
    started.push(p);
    peers.set(id, p);
  }
  const admin = a.client();
  const list = (): Promise<Listed> => admin.adminCall<Listed>("ListPeers", {});
  const ids = (l: Listed, suffrage: string): string[] =>
    l.peers
      .filter((p) => p.suffrage === suffrage)
      .map((p) => p.peer_id)
      .sort();
  const dump = async (): Promise<void> => {
    t.log(JSON.stringify(await list().catch((e: unknown) => String(e))));
    for (const p of started) t.log(p.dir, (await p.log()).split("\n").slice(-12).join("\n"));
  };

  // Three voters (one per zone first), the other two learners.
  let settled: Listed | undefined;
  await waitFor(
    async () => {
      const l = await list();
      const ok = ids(l, "voter").length === 3 && ids(l, "learner").length === 2 && l.leader !== "";
      if (ok) settled = l;
      return ok;
    },
    120_000,
    "three voters and two learners with a leader",
  ).catch(async (e) => {
    await dump();
    throw e;
  });
  const before = ids(settled!, "voter");
  t.true(before.includes("peer-a"), `voters ${before.join()}`);
  // A voter other than the leader (the test talks to peer-a, the founder and leader).
  const victim = before.find((id) => id !== settled!.leader && id !== "peer-a")!;
  t.truthy(victim);

  await peers.get(victim)!.kill("SIGKILL");
  const killedAt = Date.now();
  let replacedAt = 0;
  let after: string[] = [];
  const quorumBreaks: string[] = [];
  await waitFor(
    async () => {
      const l = await list();
      const voters = ids(l, "voter");
      const live = voters.filter((id) => id !== victim).length;
      if (live < Math.floor(voters.length / 2) + 1) quorumBreaks.push(voters.join());
      if (voters.length === 3 && !voters.includes(victim)) {
        replacedAt = Date.now();
        after = voters;
        return true;
      }
      return false;
    },
    90_000,
    "a voter in place of the stopped one",
  ).catch(async (e) => {
    await dump();
    throw e;
  });
  t.deepEqual(quorumBreaks, [], "a voter set without a quorum of live voters was observed");
  // The dead voter is replaced only once it has been unreachable past the threshold.
  t.true(replacedAt - killedAt >= DEAD_VOTER_MS, `replaced ${replacedAt - killedAt} ms after the kill`);
  // Its replacement is one of the learners; the others keep their votes.
  t.deepEqual(
    after.filter((id) => !before.includes(id)).length,
    1,
    `voters before ${before.join()}, after ${after.join()}`,
  );
  const final = await list();
  t.not(final.peers.find((p) => p.peer_id === victim)?.suffrage, "voter");
  t.is(final.peers.find((p) => p.peer_id === victim)?.state, "active", "a dead voter stays a member");
});
