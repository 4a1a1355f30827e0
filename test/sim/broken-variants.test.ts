import test from "ava";
import { runSeed } from "./simulator.js";
import type { RaftBugs } from "../../cluster/raft/core/index.js";

/**
 * The simulator must find planted bugs. Each run stops at the first seed that a checker rejects and
 * prints it; the bounds are ~2x the measured first catch (see the report in the commit history).
 */
async function firstCaught(
  bugs: RaftBugs,
  profile: string,
  seedsMax: number,
): Promise<{ seed: number; checker: string } | null> {
  for (let seed = 1; seed <= seedsMax; seed++) {
    const r = await runSeed({ seed, profile, bugs });
    if (!r.ok) return { seed, checker: r.violation!.checker };
  }
  return null;
}

test("voteBeforePersist (a crash forgets the vote) is caught within 200 seeds of the huntVotes profile", async (t) => {
  const hit = await firstCaught({ voteBeforePersist: true }, "huntVotes", 200);
  t.truthy(hit, "not caught");
  t.log(
    `caught at seed ${hit?.seed} by ${hit?.checker}: npm run sim -- --seed ${hit?.seed} --profile huntVotes --bug voteBeforePersist`,
  );
  t.is(hit?.checker, "election-safety");
});

test("commitOldTermEntries (fig. 8 early commit) is caught within 500 seeds of the huntCommits profile", async (t) => {
  const hit = await firstCaught({ commitOldTermEntries: true }, "huntCommits", 500);
  t.truthy(hit, "not caught");
  t.log(
    `caught at seed ${hit?.seed} by ${hit?.checker}: npm run sim -- --seed ${hit?.seed} --profile huntCommits --bug commitOldTermEntries`,
  );
  t.true(
    [
      "leader-completeness",
      "state-machine-safety",
      "core-invariant",
      "acked-write-lost",
      "linearizability",
    ].includes(hit!.checker),
  );
});

test("readWithoutQuorum (stale reads from a deposed leader) is caught by the linearizability checker within 100 partition seeds", async (t) => {
  const hit = await firstCaught({ readWithoutQuorum: true }, "partition", 100);
  t.truthy(hit, "not caught");
  t.log(
    `caught at seed ${hit?.seed}: npm run sim -- --seed ${hit?.seed} --profile partition --bug readWithoutQuorum`,
  );
  t.is(hit?.checker, "linearizability");
});

test("both planted bugs are also caught on the mixed profiles within 1,500 seeds", async (t) => {
  for (const bugs of [{ voteBeforePersist: true }, { commitOldTermEntries: true }] as RaftBugs[]) {
    const hit = await firstCaught(bugs, "mixed", 1500);
    t.truthy(hit, `${Object.keys(bugs)[0]} not caught on mixed`);
    t.log(`${Object.keys(bugs)[0]}: caught at mixed seed ${hit?.seed} by ${hit?.checker}`);
  }
});
