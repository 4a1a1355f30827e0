import type { Prng } from "./prng.js";

/**
 * Fault profiles: ranges from which each seed draws its own rates (TigerBeetle VOPR style), so one seed
 * fixes both the schedule and how hostile it is. "mixed" picks one of the named profiles per seed.
 */
export interface FaultPlan {
  profile: string;
  voters: number;
  /** Ticks of faults before the liveness phase. */
  faultTicks: number;
  dropRate: number;
  duplicateRate: number;
  delayTicksMax: number;
  /** Per tick: probability that one live node crashes / one crashed node restarts. */
  crashRate: number;
  /** Per tick: probability that the current leader crashes (leader churn). */
  leaderCrashRate: number;
  restartRate: number;
  /** Per Ready: probability of crashing part-way through persisting it (before any message leaves). */
  midReadyCrashRate: number;
  /** Per Ready that changed the hard state: probability of crashing right after handling it. */
  crashAfterHardStateRate: number;
  /** Per tick: probability of a new partition / of healing all partitions. */
  partitionRate: number;
  /** A new partition replaces the previous one instead of adding to it (flapping links). */
  partitionFlap: boolean;
  /** Per election won: probability that the new leader is isolated within 3 ticks. */
  isolateNewLeaderRate: number;
  healRate: number;
  /** Per tick: probability of a client write / a ReadIndex read / a membership change / a transfer. */
  proposeRate: number;
  readRate: number;
  confChangeRate: number;
  transferRate: number;
  /** Compact a node's log once it has applied this many entries past its snapshot. */
  compactEvery: number;
  heartbeatTicks: number;
  inflightMax: number;
  batchEntriesMax: number;
  batchBytesMax: number;
  preVote: boolean;
  checkQuorum: boolean;
  /** Per tick: probability that a node (the leader half the time) pauses for up to pauseTicksMax ticks. */
  pauseRate: number;
  pauseTicksMax: number;
  /**
   * Each node's clock runs at a rate drawn from [1 - tickSkew, 1 + tickSkew] ticks per tick (at most 10%:
   * with a much faster clock and no pre-vote, a node with a shorter log can keep a better one from ever
   * campaigning, as in etcd).
   */
  tickSkew: number;
  /** Per tick: probability of a one-way cut that lasts longCutTicks (heals do not end it). */
  longCutRate: number;
  longCutTicks: number;
  /** Per removal: probability that the removed node stays up and keeps sending. */
  removedStaysAliveRate: number;
  /** Per tick: probability that a down node comes back with a wiped disk (under a new id). */
  wipeRate: number;
  /** Per crash: probability of one flipped bit in a durable record (the checksums must refuse it). */
  bitFlipRate: number;
  /** Per write: probability of EIO / ENOSPC (the driver stops; the node restarts later). */
  writeErrorRate: number;
  /** Per write: probability of crashing just before / just after it (mid-Ready, mid-compaction). */
  writeCrashRate: number;
  /** Per installed snapshot: probability of crashing after it is written, before the state is restored. */
  restoreCrashRate: number;
}

export const ELECTION_TICKS = 10;

type Draw = (r: Prng) => Omit<FaultPlan, "profile">;

function base(r: Prng): Omit<FaultPlan, "profile"> {
  return {
    voters: r.pick([3, 3, 5, 5, 1]),
    faultTicks: r.range(200, 400),
    dropRate: 0,
    duplicateRate: 0,
    delayTicksMax: r.range(0, 2),
    crashRate: 0,
    leaderCrashRate: 0,
    restartRate: 0.1,
    midReadyCrashRate: 0,
    crashAfterHardStateRate: 0,
    partitionRate: 0,
    partitionFlap: r.chance(0.5),
    isolateNewLeaderRate: 0,
    healRate: 0.05,
    proposeRate: r.pick([0.2, 0.5, 0.9]),
    readRate: r.pick([0.1, 0.3, 0.6]),
    confChangeRate: 0,
    transferRate: 0,
    compactEvery: r.pick([5, 20, 1000]),
    heartbeatTicks: r.range(1, 3),
    // 256: the production in-flight window (src/raft's driver setup).
    inflightMax: r.pick([1, 2, 4, 8, 256]),
    batchEntriesMax: r.pick([1, 2, 4, 64]),
    batchBytesMax: r.pick([16, 1 << 20]),
    preVote: r.chance(0.5),
    checkQuorum: r.chance(0.5),
    pauseRate: 0,
    pauseTicksMax: 0,
    tickSkew: 0,
    longCutRate: 0,
    longCutTicks: 0,
    removedStaysAliveRate: 0,
    wipeRate: 0,
    bitFlipRate: 0,
    writeErrorRate: 0,
    writeCrashRate: 0,
    restoreCrashRate: 0,
  };
}

export const PROFILES: Record<string, Draw> = {
  calm: (r) => ({ ...base(r) }),
  lossy: (r) => ({
    ...base(r),
    dropRate: r.float() * 0.25,
    duplicateRate: r.float() * 0.1,
    delayTicksMax: r.range(1, 10),
  }),
  partition: (r) => ({
    ...base(r),
    dropRate: r.float() * 0.05,
    partitionRate: r.float() * 0.05,
    healRate: r.float() * 0.05,
    delayTicksMax: r.range(0, 5),
  }),
  crash: (r) => ({
    ...base(r),
    crashRate: 0.01 + r.float() * 0.05,
    leaderCrashRate: r.float() * 0.02,
    restartRate: 0.05 + r.float() * 0.3,
    midReadyCrashRate: r.float() * 0.01,
    crashAfterHardStateRate: r.float() * 0.02,
    dropRate: r.float() * 0.05,
  }),
  membership: (r) => ({
    ...base(r),
    voters: r.pick([3, 3, 5]),
    confChangeRate: 0.02 + r.float() * 0.08,
    transferRate: r.float() * 0.02,
    crashRate: r.float() * 0.02,
    dropRate: r.float() * 0.05,
    partitionRate: r.float() * 0.01,
    removedStaysAliveRate: r.float(),
    wipeRate: r.float() * 0.02,
    restoreCrashRate: r.float() * 0.2,
    compactEvery: r.pick([5, 20, 1000]),
  }),
  chaos: (r) => ({
    ...base(r),
    dropRate: r.float() * 0.2,
    duplicateRate: r.float() * 0.1,
    delayTicksMax: r.range(0, 8),
    crashRate: r.float() * 0.04,
    leaderCrashRate: r.float() * 0.02,
    restartRate: 0.05 + r.float() * 0.2,
    midReadyCrashRate: r.float() * 0.01,
    crashAfterHardStateRate: r.float() * 0.01,
    partitionRate: r.float() * 0.03,
    isolateNewLeaderRate: r.float() * 0.3,
    healRate: r.float() * 0.05,
    confChangeRate: r.float() * 0.04,
    transferRate: r.float() * 0.02,
    pauseRate: r.float() * 0.02,
    pauseTicksMax: r.range(5, 60),
    tickSkew: r.float() * 0.1,
    longCutRate: r.float() * 0.01,
    longCutTicks: r.range(50, 200),
    removedStaysAliveRate: r.float(),
  }),
  /** Disks that fail: torn and lost unsynced writes, flipped bits, EIO/ENOSPC, crashes around snapshots. */
  storage: (r) => ({
    ...base(r),
    crashRate: 0.01 + r.float() * 0.04,
    leaderCrashRate: r.float() * 0.02,
    restartRate: 0.05 + r.float() * 0.3,
    midReadyCrashRate: r.float() * 0.01,
    crashAfterHardStateRate: r.float() * 0.02,
    dropRate: r.float() * 0.05,
    bitFlipRate: r.float() * 0.2,
    writeErrorRate: r.float() * 0.005,
    writeCrashRate: r.float() * 0.005,
    restoreCrashRate: r.float() * 0.3,
    wipeRate: r.float() * 0.01,
    confChangeRate: r.float() * 0.02,
    compactEvery: r.pick([3, 5, 20]),
    pauseRate: r.float() * 0.01,
    pauseTicksMax: r.range(5, 30),
    tickSkew: r.float() * 0.1,
  }),
  /** Hostile to the two planted bugs: elections, crashes and small batches everywhere. */
  /** Hostile to lost votes: many elections, crashes right after voting, fast restarts, late vote requests. */
  huntVotes: (r) => ({
    ...base(r),
    voters: 3,
    faultTicks: r.range(200, 300),
    delayTicksMax: r.range(3, 10),
    duplicateRate: r.float() * 0.3,
    leaderCrashRate: 0.05 + r.float() * 0.1,
    crashRate: r.float() * 0.03,
    restartRate: 0.5 + r.float() * 0.5,
    crashAfterHardStateRate: 0.1 + r.float() * 0.2,
    proposeRate: 0.5,
    readRate: 0.1,
    compactEvery: 1000,
    preVote: false,
    checkQuorum: false,
  }),
  /** Hostile to early commits (raft fig. 8): fresh leaders cut off, flapping partitions, one entry per append. */
  huntCommits: (r) => ({
    ...base(r),
    voters: 3,
    faultTicks: r.range(200, 300),
    dropRate: r.float() * 0.1,
    delayTicksMax: r.range(0, 3),
    crashRate: r.float() * 0.02,
    leaderCrashRate: r.float() * 0.04,
    restartRate: 0.1 + r.float() * 0.5,
    crashAfterHardStateRate: r.float() * 0.05,
    duplicateRate: r.float() * 0.1,
    partitionRate: 0.05 + r.float() * 0.2,
    partitionFlap: true,
    isolateNewLeaderRate: 0.6 + r.float() * 0.4,
    healRate: r.float() * 0.05,
    proposeRate: 0.9,
    readRate: 0.1,
    batchEntriesMax: 1,
    inflightMax: r.pick([1, 2]),
    compactEvery: 1000,
  }),
};

export const MIXED = [
  "calm",
  "lossy",
  "partition",
  "crash",
  "membership",
  "chaos",
  "storage",
  "huntVotes",
  "huntCommits",
];
/** What `--profile all` cycles through, and what CI runs 1,000 seeds of each. */
export const CI_PROFILES = ["mixed", "membership", "chaos", "storage"];
/** "hunt" picks one of the bug-hunting profiles per seed. */
export const HUNT = ["huntVotes", "huntCommits"];

export function drawPlan(r: Prng, profile: string): FaultPlan {
  const name = profile === "mixed" ? r.pick(MIXED) : profile === "hunt" ? r.pick(HUNT) : profile;
  const draw = PROFILES[name];
  if (draw === undefined)
    throw new RangeError(
      `unknown profile ${profile}; known: mixed, hunt, ${Object.keys(PROFILES).join(", ")}`,
    );
  return { profile: name, ...draw(r) };
}
