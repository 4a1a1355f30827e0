/**
 * Shared setup for key-service tests: a real LevelDB in a fresh temp dir, a development CMK file,
 * a manual clock, and callers of each kind. Everything is torn down by t.teardown.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ExecutionContext } from "ava";
import { DevelopmentFileProtector } from "../../src/crypto/development-file-protector.js";
import type { Caller } from "../../src/identity/caller.js";
import type { Clock } from "../../src/time/clock.js";
import {
  openKeyService,
  type KeyServiceHandle,
  type OpenKeyServiceOptions,
} from "../../src/keys/open-key-service.js";
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

export interface Fixture {
  dir: string;
  dbDir: string;
  protector: DevelopmentFileProtector;
  clock: ManualClock;
  handle: KeyServiceHandle;
  /** Closes the current handle and opens the same store again. */
  reopen(): Promise<KeyServiceHandle>;
}

export async function openFixture(
  t: ExecutionContext,
  options: OpenKeyServiceOptions = {},
): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-keys-"));
  const clock = new ManualClock();
  const protector = await DevelopmentFileProtector.create(join(dir, "master.key"), { log: () => {} });
  const dbDir = join(dir, "db");
  const fixture: Fixture = {
    dir,
    dbDir,
    protector,
    clock,
    handle: await openKeyService(dbDir, protector, { clock, ...options }),
    async reopen() {
      await fixture.handle.close();
      fixture.handle = await openKeyService(dbDir, protector, { clock, ...options });
      return fixture.handle;
    },
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
