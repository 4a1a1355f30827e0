/**
 * Project KEKs: one 256-bit key per project, created on first use, stored wrapped under the CMK
 * (through the Barrier) in a KekStore: in a peer, the replicated control state (src/controlplane
 * control-kek-store.ts), so a project has one KEK cluster-wide; without one (tools, unit tests), the
 * "meta" sublevel as `kek/<project>` (metaKekStore).
 * Unwrapped KEKs, and the record-MAC key derived from each (crypto/record-mac.ts), are cached in
 * memory (like the CMK itself) and zeroed on close and on seal. Concurrent first uses of a project
 * share one creation, so a project never gets two KEKs.
 */
import type { Barrier } from "../crypto/barrier.js";
import type { EnvelopeBinding } from "../crypto/envelope.js";
import { zeroize, type RandomSource } from "../crypto/random-source.js";
import { deriveRecordMacKey } from "../crypto/record-mac.js";
import { LockboxError } from "../errors.js";
import type { PeerStore } from "../store/peer-store.js";

export const KEK_BYTES = 32;
/** Generation written into the header of envelopes wrapped under a project KEK. */
export const KEK_GENERATION = 1;

export const kekMetaKey = (project: string): string => `kek/${project}`;

export const kekBinding = (project: string): EnvelopeBinding => ({
  kind: "project-kek",
  id: project,
  attributes: { algorithm: "AES", bitLength: KEK_BYTES * 8 },
});

/** A project's keys: the KEK that wraps its keys' material and the key that MACs its records. */
export interface ProjectKeys {
  kek: Uint8Array;
  recordMacKey: Uint8Array;
}

/** Where wrapped KEKs live. Only ciphertext passes through it. */
export interface KekStore {
  /** The wrapped KEK of `project`, if it has one. */
  get(project: string): Promise<Uint8Array | undefined>;
  /**
   * Stores `wrapped` unless the project has a KEK already, and returns the wrapped KEK that holds:
   * the first writer wins, so two peers creating a project's KEK at once end up with one.
   */
  createIfAbsent(project: string, wrapped: Uint8Array): Promise<Uint8Array>;
}

/** KEKs in this peer's own store (the "meta" sublevel): one peer's, not the cluster's. */
export function metaKekStore(store: PeerStore): KekStore {
  return {
    get: (project) => store.get("meta", kekMetaKey(project)),
    async createIfAbsent(project, wrapped) {
      // ProjectKeks shares one creation per project within this process, and nothing else writes here.
      await store.write([{ type: "put", sublevel: "meta", key: kekMetaKey(project), value: wrapped }]);
      return wrapped;
    },
  };
}

export class ProjectKeks {
  private readonly cache = new Map<string, Promise<ProjectKeys>>();
  private readonly kekStore: KekStore;

  constructor(
    store: PeerStore,
    private readonly barrier: Barrier,
    private readonly random: RandomSource,
    kekStore?: KekStore,
  ) {
    this.kekStore = kekStore ?? metaKekStore(store);
  }

  /** The project's keys, creating its KEK if the project has none yet. */
  getOrCreate(project: string): Promise<ProjectKeys> {
    return this.cached(project, true);
  }

  /** The project's keys; DATA_LOSS if its KEK is missing (records exist but their KEK does not). */
  getExisting(project: string): Promise<ProjectKeys> {
    return this.cached(project, false);
  }

  /** Zeroes every cached KEK and record-MAC key. */
  async zeroize(): Promise<void> {
    const all = [...this.cache.values()];
    this.cache.clear();
    for (const p of all) {
      const keys = await p.catch(() => undefined);
      zeroize(keys?.kek);
      zeroize(keys?.recordMacKey);
    }
  }

  private cached(project: string, create: boolean): Promise<ProjectKeys> {
    let p = this.cache.get(project);
    if (p === undefined) {
      p = this.load(project, create);
      this.cache.set(project, p);
      // A failure is not cached; but only this load's entry is dropped, never a newer one that
      // replaced it after zeroize() (dropping that would let a second KEK be created beside it).
      const loading = p;
      p.catch(() => {
        if (this.cache.get(project) === loading) this.cache.delete(project);
      });
    }
    return p;
  }

  private async load(project: string, create: boolean): Promise<ProjectKeys> {
    const kek = await this.loadKek(project, create);
    return { kek, recordMacKey: deriveRecordMacKey(kek, project) };
  }

  private async loadKek(project: string, create: boolean): Promise<Uint8Array> {
    const stored = await this.kekStore.get(project);
    if (stored !== undefined) return this.unwrap(project, stored);
    if (!create) throw new LockboxError("DATA_LOSS", `the KEK of project ${project} is missing`);
    const kek = this.random.bytes(KEK_BYTES);
    const wrapped = this.barrier.wrap(kek, kekBinding(project));
    let holding: Uint8Array;
    try {
      holding = await this.kekStore.createIfAbsent(project, wrapped);
    } catch (e) {
      zeroize(kek);
      throw e;
    }
    if (Buffer.from(holding).equals(Buffer.from(wrapped))) return kek;
    // Another peer created the project's KEK first: use that one.
    zeroize(kek);
    return this.unwrap(project, holding);
  }

  private unwrap(project: string, stored: Uint8Array): Uint8Array {
    try {
      return this.barrier.unwrap(stored, kekBinding(project));
    } catch (e) {
      if (e instanceof LockboxError && e.code === "DATA_LOSS") {
        throw new LockboxError(
          "DATA_LOSS",
          `integrity check failed for the KEK of project ${project}`,
          undefined,
          {
            cause: e,
          },
        );
      }
      throw e;
    }
  }
}
