/**
 * Shared setup for key-service tests: a real LevelDB in a fresh temp dir, a development CMK file,
 * a manual clock, and callers of each kind, built by the peer's own composition root (openPeerCore)
 * so the key service under test is assembled exactly as a serving peer's is. Everything is torn
 * down by t.teardown.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ExecutionContext } from "ava";
import { DevelopmentFileProtector } from "../../src/crypto/development-file-protector.js";
import type { Caller } from "../../src/identity/caller.js";
import type { Clock } from "../../src/time/clock.js";
import type { AuditLog } from "../../src/audit/audit-log.js";
import type { Barrier } from "../../src/crypto/barrier.js";
import type { MasterKeyProvider } from "../../src/crypto/master-key-provider.js";
import type { KeyService } from "../../src/keys/key-service.js";
import { openPeerCore, type PeerCoreSpec } from "../../src/peer/peer-core.js";
import type { PeerStore } from "../../src/store/peer-store.js";

export class ManualClock implements Clock {
  constructor(public nowMs = Date.UTC(2026, 0, 1)) {}
  now(): Date {
    return new Date(this.nowMs);
  }
  advance(ms: number): void {
    this.nowMs += ms;
  }
}

export const admin: Caller = { identity: "ops-admin", role: "admin", projects: [] };
export const serviceOf = (identity: string, ...projects: string[]): Caller => ({
  identity,
  role: "service",
  projects,
});

/** The parts of a peer's core a key-service test reaches into. */
export interface KeyServiceHandle {
  service: KeyService;
  store: PeerStore;
  barrier: Barrier;
  audit: AuditLog;
  /** Zeroes KEKs, seals the barrier, flushes and closes the store. Idempotent. */
  close(): Promise<void>;
}

export interface Fixture {
  dir: string;
  dbDir: string;
  /** The ring salt the store is pinned to (placement of key ids). */
  clusterSalt: Uint8Array;
  protector: DevelopmentFileProtector;
  clock: ManualClock;
  handle: KeyServiceHandle;
  /** Closes the current handle and opens the same store again. */
  reopen(): Promise<KeyServiceHandle>;
  /** Opens the same store as another handle (the caller closes it), under `masterKey` if given. */
  open(masterKey?: MasterKeyProvider): Promise<KeyServiceHandle>;
}

/** Tunables a test may set on the core it opens (the rest is as a serving peer's). */
export type FixtureOptions = Pick<
  PeerCoreSpec,
  "store" | "grantsPerKeyMax" | "consumersPerKeyMax" | "clientRequests" | "random"
>;

export async function openFixture(t: ExecutionContext, options: FixtureOptions = {}): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-keys-"));
  const clock = new ManualClock();
  const protector = await DevelopmentFileProtector.create(join(dir, "master.key"), { log: () => {} });
  const dbDir = join(dir, "db");
  // What `lockbox init` puts in a peer's config: the ring parameters the store is pinned to.
  const clusterSalt = randomBytes(32);
  const open = async (masterKey: MasterKeyProvider = protector): Promise<KeyServiceHandle> => {
    const core = await openPeerCore({
      dataDir: dbDir,
      masterKey,
      clusterSalt,
      partitionPower: 10,
      clock,
      ...options,
    });
    return {
      service: core.keys,
      store: core.store,
      barrier: core.barrier,
      audit: core.audit,
      close: core.close,
    };
  };
  const fixture: Fixture = {
    dir,
    dbDir,
    clusterSalt,
    protector,
    clock,
    handle: await open(),
    async reopen() {
      await fixture.handle.close();
      fixture.handle = await open();
      return fixture.handle;
    },
    open,
  };
  t.teardown(async () => {
    await fixture.handle.close();
    await rm(dir, { recursive: true, force: true });
  });
  return fixture;
}

/** Every key and value in the whole database (all sublevels), for before/after comparisons. */
export async function dumpDb(store: PeerStore): Promise<string[]> {
  const rows: string[] = [];
  for await (const [k, v] of store.db.iterator({ keyEncoding: "utf8", valueEncoding: "hex" })) {
    rows.push(`${k}=${v}`);
  }
  return rows;
}
