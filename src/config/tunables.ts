/**
 * Every tunable of a peer beyond its identity and files, with its default, in one table: the
 * config file may set any of them (sections at the root of config.json), `lockbox init` writes
 * them all with their defaults, and docs/configuration.md lists them (a test keeps that page
 * complete). A value is checked when the config loads, and the error names `section.key`.
 */
import { EDGE_LIMITS_DEFAULT, type EdgeLimits } from "../server/edge-limits.js";
import { describeHostPort, isHostPort } from "../net/host-port.js";
import { LOG_LEVELS, type LogLevel, isLogLevel } from "../logging/log-level.js";
import { REST_LIMITS_DEFAULT, type RestLimits } from "./rest-limits.js";
import { WRITE_BUFFER_BYTES_DEFAULT } from "../store/peer-store.js";

export interface Tunables {
  log: {
    /** Least severe level written (pino's names). */
    level: LogLevel;
    /** Refused calls are summed up in one warn line per window, never logged one by one. */
    refusedCallWindowMs: number;
  };
  metrics: {
    /** HOST:PORT of the HTTP listener for /metrics, /healthz and /readyz; "" turns it off. */
    listen: string;
  };
  /** The gRPC edge's bounds (src/server/edge-limits.ts). */
  edge: EdgeLimits;
  audit: {
    /** Most audit records kept. */
    recordsMax: number;
    /** Oldest audit record kept, in days. */
    ageMaxDays: number;
    /** Refused unauthenticated calls are counted into one record per source and reason per window. */
    refusalWindowMs: number;
    /** Distinct refusal counters per window; more share one overflow record. */
    refusalKeysMax: number;
    /** Also write every audit record as a JSON line to this file ("" = no file). */
    exportFile: string;
    /** Also send every audit record to syslog over UDP: "udp:HOST:PORT" ("" = off). */
    exportSyslog: string;
  };
  store: {
    /** Most operations waiting for a group commit; more are refused (RESOURCE_EXHAUSTED). */
    queuedOpsMax: number;
    /** Most operations in one synced batch. */
    batchOpsMax: number;
    /** Longest a destroyed key's material waits before its purge starts. */
    purgeDelayMs: number;
    /** Most keys one purge run compacts. */
    purgeKeysPerRunMax: number;
    /** LevelDB's memtable: bytes written before they are flushed to a table file (1 MiB..1 GiB). */
    writeBufferBytes: number;
  };
  keys: {
    /** Most live grants one key may have. */
    grantsPerKeyMax: number;
  };
  /** Keys on the ring (DESIGN §4, src/replication). */
  replication: {
    /** Keys live on N peers of the ring; false keeps each key on the peer that created it. */
    enabled: boolean;
    /** N, the replicas of every partition (fewer while the cluster has fewer peers). */
    replicas: number;
    /** A partition that moved is not moved again for this many hours (peers leaving excepted). */
    minPartHours: number;
    /** A write not synced by W primaries within this fails UNAVAILABLE (retryable). */
    writeDeadlineMs: number;
    /** A read not answered by R primaries within this fails UNAVAILABLE (retryable). */
    readDeadlineMs: number;
    /** Replicas compare partition digests and push what differs this often. */
    antiEntropyIntervalMs: number;
    /** Handoff copies are taken home this often. */
    handoffIntervalMs: number;
    /** Tombstones older than this are deleted; must exceed the worst replication cycle. */
    reclaimAgeMs: number;
    /** Handoff copies not delivered within this are dropped; must be below reclaimAgeMs. */
    hintMaxAgeMs: number;
  };
  /** Continuous attestation (src/attestation/attestation-monitor.ts): re-quotes of every member. */
  attestation: {
    /** Time between two rounds of re-quotes; a PCR change fences within two of them. */
    intervalMs: number;
    /** How long a member has to answer a re-quote before it is marked down (not fenced); below intervalMs. */
    timeoutMs: number;
  };
  /** The Barbican REST listener's bounds and its Keystone validation's (src/config/rest-limits.ts). */
  restLimits: RestLimits;
  /** The leader's membership autopilot (src/controlplane/membership-autopilot.ts). */
  autopilot: {
    /** Voters wanted (3 or 5; fewer while fewer members are healthy). */
    voterTarget: number;
    /** How long a learner must be healthy and caught up before it is promoted. */
    stabilizationMs: number;
    /** A voter that has not answered the leader for this long is replaced by a healthy learner. */
    deadVoterMs: number;
    /**
     * A joining member (attested, admitted, not yet confirmed that it sealed the CMK) that has not
     * confirmed for this long, as the leader sees it, goes back to enrolled and its certificate is
     * revoked (src/controlplane/leader-duties.ts).
     */
    joinConfirmTimeoutMs: number;
  };
}

export const TUNABLES_DEFAULT: Tunables = {
  log: { level: "info", refusedCallWindowMs: 10_000 },
  metrics: { listen: "" },
  edge: { ...EDGE_LIMITS_DEFAULT },
  audit: {
    recordsMax: 1_000_000,
    ageMaxDays: 400,
    refusalWindowMs: 10_000,
    refusalKeysMax: 256,
    exportFile: "",
    exportSyslog: "",
  },
  store: {
    queuedOpsMax: 100_000,
    batchOpsMax: 10_000,
    purgeDelayMs: 1_000,
    purgeKeysPerRunMax: 256,
    writeBufferBytes: WRITE_BUFFER_BYTES_DEFAULT,
  },
  keys: { grantsPerKeyMax: 1_000 },
  replication: {
    enabled: false,
    replicas: 3,
    minPartHours: 1,
    writeDeadlineMs: 5_000,
    readDeadlineMs: 5_000,
    antiEntropyIntervalMs: 30_000,
    handoffIntervalMs: 10_000,
    reclaimAgeMs: 7 * 86_400_000,
    hintMaxAgeMs: 86_400_000,
  },
  attestation: { intervalMs: 10_000, timeoutMs: 3_000 },
  restLimits: { ...REST_LIMITS_DEFAULT },
  autopilot: { voterTarget: 3, stabilizationMs: 2_000, deadVoterMs: 10_000, joinConfirmTimeoutMs: 120_000 },
};

type Check = (value: unknown) => string | undefined;

const positiveInt: Check = (v) =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= 1 ? undefined : "must be a positive integer";
const nonNegativeInt: Check = (v) =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? undefined : "must be an integer >= 0";
const bool: Check = (v) => (typeof v === "boolean" ? undefined : "must be true or false");
const replicaCount: Check = (v) =>
  typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= 15
    ? undefined
    : "must be an integer in 1..15";
const hours: Check = (v) =>
  typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 255
    ? undefined
    : "must be an integer in 0..255";
const atLeast100: Check = (v) =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= 100 ? undefined : "must be an integer >= 100";
const level: Check = (v) => (isLogLevel(v) ? undefined : `must be one of ${LOG_LEVELS.join(", ")}`);
const listenOrOff: Check = (v) =>
  v === "" || (typeof v === "string" && isHostPort(v, { portZero: true }))
    ? undefined
    : `must be "" (off) or ${describeHostPort({ portZero: true })}`;
const pathOrOff: Check = (v) =>
  typeof v === "string" && !v.includes("\0") ? undefined : 'must be "" (off) or a file path';
const syslogOrOff: Check = (v) =>
  v === "" || (typeof v === "string" && v.startsWith("udp:") && isHostPort(v.slice(4)))
    ? undefined
    : 'must be "" (off) or "udp:HOST:PORT"';

/** How each tunable is checked; every key of TUNABLES_DEFAULT has one (checked at load). */
const CHECKS: { [S in keyof Tunables]: { [K in keyof Tunables[S]]: Check } } = {
  log: { level, refusedCallWindowMs: positiveInt },
  metrics: { listen: listenOrOff },
  edge: Object.fromEntries(Object.keys(EDGE_LIMITS_DEFAULT).map((k) => [k, positiveInt])) as {
    [K in keyof EdgeLimits]: Check;
  },
  audit: {
    recordsMax: positiveInt,
    ageMaxDays: positiveInt,
    refusalWindowMs: positiveInt,
    refusalKeysMax: positiveInt,
    exportFile: pathOrOff,
    exportSyslog: syslogOrOff,
  },
  store: {
    queuedOpsMax: positiveInt,
    batchOpsMax: positiveInt,
    purgeDelayMs: nonNegativeInt,
    purgeKeysPerRunMax: positiveInt,
    writeBufferBytes: (v) =>
      typeof v === "number" && Number.isSafeInteger(v) && v >= 2 ** 20 && v <= 2 ** 30
        ? undefined
        : "must be an integer from 1048576 (1 MiB) to 1073741824 (1 GiB)",
  },
  keys: { grantsPerKeyMax: positiveInt },
  replication: {
    enabled: bool,
    replicas: replicaCount,
    minPartHours: hours,
    writeDeadlineMs: positiveInt,
    readDeadlineMs: positiveInt,
    antiEntropyIntervalMs: positiveInt,
    handoffIntervalMs: positiveInt,
    reclaimAgeMs: positiveInt,
    hintMaxAgeMs: positiveInt,
  },
  attestation: { intervalMs: atLeast100, timeoutMs: positiveInt },
  restLimits: Object.fromEntries(Object.keys(REST_LIMITS_DEFAULT).map((k) => [k, positiveInt])) as {
    [K in keyof RestLimits]: Check;
  },
  autopilot: {
    voterTarget: (v) =>
      v === 1 || v === 3 || v === 5 || v === 7 ? undefined : "must be 1, 3, 5 or 7 (an odd voter count)",
    stabilizationMs: nonNegativeInt,
    deadVoterMs: positiveInt,
    joinConfirmTimeoutMs: positiveInt,
  },
};

/**
 * The tunables of a parsed config.json: each section at its root is optional, and so is each key
 * in it; what is absent takes its default. An unknown section or key is refused (a typo would
 * otherwise be silently ignored), and so is a wrong value; `bad` builds the error naming it.
 */
export function validateTunables(
  root: Record<string, unknown>,
  bad: (field: string, what: string) => Error,
): Tunables {
  const out: Record<string, Record<string, unknown>> = {};
  for (const section of Object.keys(TUNABLES_DEFAULT) as (keyof Tunables)[]) {
    const defaults = TUNABLES_DEFAULT[section] as unknown as Record<string, unknown>;
    const checks = CHECKS[section] as Record<string, Check>;
    const given = root[section];
    if (given === undefined) {
      out[section] = { ...defaults };
      continue;
    }
    if (typeof given !== "object" || given === null || Array.isArray(given))
      throw bad(section, "must be an object");
    const values = given as Record<string, unknown>;
    for (const key of Object.keys(values)) {
      if (!Object.hasOwn(defaults, key)) {
        throw bad(`${section}.${key}`, `is not a tunable (known: ${Object.keys(defaults).join(", ")})`);
      }
    }
    const resolved: Record<string, unknown> = {};
    for (const key of Object.keys(defaults)) {
      const value = values[key] ?? defaults[key];
      const problem = checks[key]!(value);
      if (problem !== undefined) throw bad(`${section}.${key}`, problem);
      resolved[key] = value;
    }
    out[section] = resolved;
  }
  const tunables = out as unknown as Tunables;
  if (tunables.attestation.timeoutMs >= tunables.attestation.intervalMs) {
    throw bad("attestation.timeoutMs", "must be below attestation.intervalMs");
  }
  return tunables;
}

/** Every tunable as `section.key` with its default, in the order of TUNABLES_DEFAULT (docs, tests). */
export function tunableDefaults(): [name: string, value: unknown][] {
  return Object.entries(TUNABLES_DEFAULT).flatMap(([section, values]) =>
    Object.entries(values as Record<string, unknown>).map(
      ([key, value]) => [`${section}.${key}`, value] as [string, unknown],
    ),
  );
}
