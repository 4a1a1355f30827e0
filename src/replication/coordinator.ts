/**
 * The coordinator (DESIGN §4): the peer that received a call writes and reads the key's record on the
 * partition's N primaries.
 *
 * Write: the record goes to every primary believed up; OK only once W = floor(N/2)+1 distinct primaries
 * answered that they synced it. A primary that is down, or does not answer, has its copy sent to the
 * next handoff peer in ring order with a hint naming it (Swift's hinted handoff); the handoff runner
 * takes it home later. Handoff copies do not count toward W: a read asks the primaries, so only copies
 * on primaries are certain to meet a read quorum (R + W > N over the same N places). They make the
 * write more durable and bring the missing primary up to date sooner. The write fails UNAVAILABLE
 * (retryable) once W can no longer be reached or its deadline passes; copies already sent may land
 * anyway, as with any write whose answer is lost (callers retry with the same record: merges are
 * idempotent).
 *
 * Rivals: a key made by a create with a client request id has an id derived from the request, so a
 * retry through another peer writes a rival version of the same id (replicated-key.ts). A replica
 * holding a rival refuses the put (ALREADY_EXISTS), so two quorums of one ring cannot each hold
 * another rival, and at most one rival is ever acknowledged. `settle(id)` decides which version the
 * id keeps: a version already settled; else the one a write quorum holds (the acknowledged one, if
 * any was); else, when none does (none was acknowledged), the rival with the earliest creation stamp,
 * once it has been written to a write quorum. It then writes that version marked settled, which
 * replaces the unsettled rivals wherever it lands, and returns it. A write refused by rivals fails
 * ALREADY_EXISTS (the key service settles and answers with the winner), a read that meets unsettled
 * rivals settles before answering, and so does a read (or listing) whose answer is an unsettled
 * version that fewer than W answers hold (a rival may sit on a primary it did not ask, and a later
 * settle could keep that one); every rival refusal settles the id in the background, so the
 * replicas converge. Guarantee: within one ring version and while no acknowledged copy is lost, the
 * version a client was answered with is the one every later read returns.
 *
 * Read: R = floor(N/2)+1 primaries must answer (a "not found" is an answer); their versions are merged
 * (replicated-key.ts), and replicas whose version differs from the merge are repaired in the
 * background once every asked primary answered or timed out. An answer that is not the asked key (by
 * id or by partition) does not count: no read returns another key's material.
 */
import type { Scheduler } from "../../cluster/raft/driver/scheduler.js";
import {
  compareStamps,
  decodeReplicatedKey,
  encodeReplicatedKey,
  mergeAll,
  mergeKeys,
  PlaceQuorum,
  ReplicationError,
  sameBody,
  type ReplicatedKey,
} from "../../cluster/replication/index.js";
import { LockboxError } from "../errors.js";
import type { ItemSender } from "./link-batcher.js";
import type { ReplicaItem } from "./peer-link.js";
import type { PlacementView } from "./placement-view.js";
import { bytesEqual } from "./replica.js";
import type { ReplicationBugs } from "./replication-bugs.js";

export interface CoordinatorOptions {
  sender: ItemSender;
  placement: PlacementView;
  scheduler: Scheduler;
  writeDeadlineMs?: number;
  readDeadlineMs?: number;
  /**
   * A read that has no quorum this long after it started asks every primary it has not asked yet
   * (default: a quarter of the read deadline, at most 1 s; shorter hedges fire on a merely busy
   * machine and add the very load that made it slow).
   */
  readHedgeMs?: number;
  /** The replicas' digest bucket bits (Replica's bucketBits): a partition read pulls every bucket. */
  bucketBits?: number;
  bugs?: ReplicationBugs;
  /** Rounds one settle runs before it gives up UNAVAILABLE (3). */
  settleRounds?: number;
}

export interface CoordinatorMetrics {
  writes: number;
  writesAcked: number;
  writesUnavailable: number;
  handoffCopies: number;
  reads: number;
  readsUnavailable: number;
  /** Reads that asked the remaining primaries because no quorum answered within readHedgeMs. */
  readHedges: number;
  badAnswers: number;
  repairs: number;
  /** Puts refused because the replica holds a rival version (rivals, above). */
  rivalRefusals: number;
  /** Settles run (rivals, above). */
  settles: number;
}

export class Coordinator {
  private readonly writeDeadlineMs: number;
  private readonly readDeadlineMs: number;
  private readonly readHedgeMs: number;
  /** Rotates which other primaries a read asks first. */
  private readTurn = 0;
  readonly metrics: CoordinatorMetrics = {
    writes: 0,
    writesAcked: 0,
    writesUnavailable: 0,
    handoffCopies: 0,
    reads: 0,
    readsUnavailable: 0,
    readHedges: 0,
    badAnswers: 0,
    repairs: 0,
    rivalRefusals: 0,
    settles: 0,
  };
  /** Running settles by key id: one at a time per id. */
  private readonly settling = new Map<string, Promise<ReplicatedKey | null>>();

  constructor(private readonly options: CoordinatorOptions) {
    this.writeDeadlineMs = options.writeDeadlineMs ?? 10_000;
    this.readDeadlineMs = options.readDeadlineMs ?? 10_000;
    this.readHedgeMs = options.readHedgeMs ?? Math.min(1_000, Math.ceil(this.readDeadlineMs / 4));
  }

  /** Replicates one version of a record; resolves once W primaries synced it. */
  write(record: ReplicatedKey): Promise<void> {
    let bytes: Uint8Array;
    try {
      bytes = encodeReplicatedKey(record);
    } catch (e) {
      if (e instanceof ReplicationError)
        return Promise.reject(new LockboxError("INVALID_ARGUMENT", e.message));
      throw e;
    }
    const { placement, sender, scheduler } = this.options;
    const partition = placement.partitionOfKey(record.fields.id);
    const primaries = placement.primaries(partition);
    const handoffs = placement.handoffs(partition).filter((h) => placement.isUp(h));
    const quorum = new PlaceQuorum(primaries, this.options.bugs?.ackBeforeQuorum ? 1 : undefined);
    const needed = quorum.needed;
    this.metrics.writes += 1;
    return new Promise<void>((resolve, reject) => {
      let done = false;
      let primaryFailures = 0;
      let rivals = 0;
      let nextHandoff = 0;
      /** UNAVAILABLE, or ALREADY_EXISTS once a primary holds a rival version (the caller settles). */
      const failed = (message: string): LockboxError =>
        new LockboxError(
          rivals > 0 ? "ALREADY_EXISTS" : "UNAVAILABLE",
          rivals > 0 ? `${message}; ${rivals} hold a rival version` : message,
        );
      const finish = (error?: LockboxError): void => {
        if (done) return;
        done = true;
        cancel();
        if (error === undefined) {
          this.metrics.writesAcked += 1;
          resolve();
        } else {
          this.metrics.writesUnavailable += 1;
          reject(error);
        }
      };
      const cancel = scheduler.after(this.writeDeadlineMs, () =>
        finish(
          failed(
            `write of key ${record.fields.id}: ${quorum.count} of ${needed} primaries synced within ${this.writeDeadlineMs} ms`,
          ),
        ),
      );
      const standIn = (owner: string): void => {
        const h = handoffs[nextHandoff++];
        if (h === undefined) return; // no handoff left: the owner catches up by anti-entropy
        this.metrics.handoffCopies += 1;
        void sender.request(h, this.putItem(partition, bytes, record, h, owner)).then((r) => {
          if (!r.ok) standIn(owner);
        });
      };
      const primaryFailed = (peer: string, rival = false): void => {
        primaryFailures += 1;
        // A primary holding a rival needs no stand-in: it is up, and keeps its version until settled.
        if (rival) rivals += 1;
        else standIn(peer);
        if (primaryFailures > primaries.length - needed) {
          finish(
            failed(
              `write of key ${record.fields.id}: ${primaryFailures} of ${primaries.length} primaries failed; ${needed} must sync`,
            ),
          );
        }
      };
      for (const peer of primaries) {
        if (!placement.isUp(peer)) {
          primaryFailed(peer);
          continue;
        }
        void sender.request(peer, this.putItem(partition, bytes, record, peer)).then((r) => {
          if (!r.ok && r.code === "ALREADY_EXISTS" && record.fields.request !== undefined) {
            this.metrics.rivalRefusals += 1;
            // Also after this write is answered: the replicas converge only once the id is settled.
            this.settleSoon(record.fields.id);
            return primaryFailed(peer, true);
          }
          if (!r.ok) return primaryFailed(peer);
          quorum.answer(peer);
          if (quorum.reached) finish();
        });
      }
    });
  }

  /**
   * The merged record of `id` from R primaries, or null when none holds it. It asks only R primaries
   * at first (this peer first when it is one: its answer costs no message), and another primary only
   * when an asked one fails or gives a bad answer, or when no quorum has answered `readHedgeMs` after
   * the start (then every primary not yet asked). The answer still waits for R good answers: asking
   * fewer primaries changes the cost of a read, never what it needs before answering (R + W > N).
   */
  read(id: string): Promise<ReplicatedKey | null> {
    const { placement, sender, scheduler } = this.options;
    const partition = placement.partitionOfKey(id);
    const primaries = placement.primaries(partition);
    const quorum = new PlaceQuorum(primaries, this.options.bugs?.readTrustsOneReplica ? 1 : undefined);
    const needed = quorum.needed;
    const writeNeeded = new PlaceQuorum(primaries).needed;
    this.metrics.reads += 1;
    // The up primaries in asking order: this peer first, then the others from a turn that rotates
    // per read, so the spare answers spread over them.
    const up = primaries.filter((p) => placement.isUp(p));
    const own = up.indexOf(sender.self);
    const others = own < 0 ? up : [...up.slice(0, own), ...up.slice(own + 1)];
    const turn = others.length === 0 ? 0 : this.readTurn++ % others.length;
    const order = [...(own < 0 ? [] : [sender.self]), ...others.slice(turn), ...others.slice(0, turn)];
    return new Promise<ReplicatedKey | null>((resolve, reject) => {
      let done = false;
      let failures = primaries.length - up.length; // down primaries cannot answer
      let pending = 0;
      let asked = 0;
      /** Peer -> its answer (null: it holds no record). */
      const answers = new Map<string, { bytes: Uint8Array; record: ReplicatedKey } | null>();
      const fail = (why: string): void => {
        if (done) return;
        done = true;
        cancel();
        cancelHedge();
        this.metrics.readsUnavailable += 1;
        reject(new LockboxError("UNAVAILABLE", `read of key ${id}: ${why}`));
      };
      const cancel = scheduler.after(this.readDeadlineMs, () =>
        fail(`${quorum.count} of ${needed} primaries answered within ${this.readDeadlineMs} ms`),
      );
      const cancelHedge =
        this.readHedgeMs < this.readDeadlineMs
          ? scheduler.after(this.readHedgeMs, () => {
              if (!done && asked < order.length) this.metrics.readHedges += 1;
              while (!done && asked < order.length) ask(order[asked++]!);
            })
          : () => {};
      const merged = (): ReplicatedKey | null => {
        const found = [...answers.values()].filter((a) => a !== null).map((a) => a!.record);
        if (found.length === 0) return null;
        // Answers of the same bytes share one decoded record (checkAnswer), and a merge of a record
        // with itself is that record (the merge is idempotent): the common read merges nothing.
        return found.every((r) => r === found[0]) ? found[0]! : mergeAll(found);
      };
      const settleOne = (): void => {
        pending -= 1;
        if (!done && failures > primaries.length - needed) fail(`${failures} primaries could not answer`);
        if (pending === 0) this.repair(partition, answers, merged);
      };
      const ask = (peer: string): void => {
        pending += 1;
        void sender.request(peer, { kind: "get", partition, id }).then((r) => {
          const answer = r.ok && r.kind === "get" ? this.checkAnswer(id, r, answers.values()) : undefined;
          if (answer === undefined) {
            failures += 1;
            // One answer fewer than hoped: ask a primary not asked yet, before this one settles.
            if (!done && asked < order.length) ask(order[asked++]!);
          } else {
            answers.set(peer, answer);
            quorum.answer(peer);
            if (!done && quorum.reached) {
              let result: ReplicatedKey | null;
              try {
                result = merged();
              } catch (e) {
                if (e instanceof ReplicationError && e.code === "RIVAL") {
                  // Rival versions of a client request's key: answer with the one the id keeps.
                  done = true;
                  cancel();
                  cancelHedge();
                  this.settle(id).then(resolve, reject);
                  settleOne();
                  return;
                }
                // Replicas disagree on immutable fields: serve nothing rather than pick one.
                done = true;
                cancel();
                cancelHedge();
                reject(
                  new LockboxError(
                    "DATA_LOSS",
                    `read of key ${id}: replicas disagree on the record`,
                    undefined,
                    { cause: e },
                  ),
                );
                settleOne();
                return;
              }
              done = true;
              cancel();
              cancelHedge();
              if (
                result !== null &&
                this.mayBeOutvoted(
                  result,
                  [...answers.values()].flatMap((a) => (a === null ? [] : [a.record])),
                  writeNeeded,
                )
              ) {
                // An unsettled version of a client request's key that fewer than W answers hold: a
                // rival of it may sit on the primaries not asked, and a later settle could pick that
                // one. Settle now, so what this read answers is what every later read answers.
                this.settle(id).then(resolve, reject);
                settleOne();
                return;
              }
              resolve(result);
            }
          }
          settleOne();
        });
      };
      if (up.length === 0 || failures > primaries.length - needed) {
        fail(`${failures} of ${primaries.length} primaries are down`);
        return;
      }
      while (asked < Math.min(needed, order.length)) ask(order[asked++]!);
    });
  }

  /**
   * Every record of `partition`, merged from R primaries (ListKeys, and RevokeGrant's search): each
   * answer is every bucket of the partition; records not of the partition do not count, and a record
   * whose versions conflict is left out rather than served. No read repair: anti-entropy covers it.
   */
  readPartition(partition: number): Promise<ReplicatedKey[]> {
    const { placement, sender, scheduler } = this.options;
    const primaries = placement.primaries(partition);
    const quorum = new PlaceQuorum(primaries, this.options.bugs?.readTrustsOneReplica ? 1 : undefined);
    const buckets = Array.from({ length: 1 << (this.options.bucketBits ?? 8) }, (_, i) => i);
    this.metrics.reads += 1;
    return new Promise<ReplicatedKey[]>((resolve, reject) => {
      let done = false;
      let failures = 0;
      const byId = new Map<string, ReplicatedKey[]>();
      const fail = (why: string): void => {
        if (done) return;
        done = true;
        cancel();
        this.metrics.readsUnavailable += 1;
        reject(new LockboxError("UNAVAILABLE", `read of partition ${partition}: ${why}`));
      };
      const cancel = scheduler.after(this.readDeadlineMs, () =>
        fail(`${quorum.count} of ${quorum.needed} primaries answered within ${this.readDeadlineMs} ms`),
      );
      const failed = (): void => {
        failures += 1;
        if (failures > primaries.length - quorum.needed)
          fail(`${failures} of ${primaries.length} primaries could not answer`);
      };
      for (const peer of primaries) {
        if (!placement.isUp(peer)) {
          failed();
          continue;
        }
        void sender.request(peer, { kind: "pull", partition, buckets }).then((r) => {
          if (done) return;
          if (!r.ok || r.kind !== "pull") return failed();
          const decoded: ReplicatedKey[] = [];
          for (const bytes of r.records) {
            try {
              const k = decodeReplicatedKey(bytes);
              if (placement.partitionOfKey(k.fields.id) !== partition) throw new Error("misplaced");
              decoded.push(k);
            } catch {
              this.metrics.badAnswers += 1;
              return failed(); // one bad record spoils the whole answer: it cannot be trusted
            }
          }
          for (const k of decoded) {
            const list = byId.get(k.fields.id);
            if (list === undefined) byId.set(k.fields.id, [k]);
            else list.push(k);
          }
          quorum.answer(peer);
          if (!quorum.reached) return;
          done = true;
          cancel();
          const out: ReplicatedKey[] = [];
          const unsettledIds: string[] = [];
          const writeNeeded = new PlaceQuorum(primaries).needed;
          for (const [id, versions] of byId) {
            try {
              const m = mergeAll(versions);
              // As in read: an unsettled version fewer than W answers hold may lose a later settle.
              if (this.mayBeOutvoted(m, versions, writeNeeded)) unsettledIds.push(id);
              else out.push(m);
            } catch (e) {
              if (e instanceof ReplicationError && e.code === "RIVAL") unsettledIds.push(id);
              else this.metrics.badAnswers += 1; // replicas disagree on an immutable part: serve neither
            }
          }
          if (unsettledIds.length === 0) return resolve(out);
          // An acknowledged key may sit beside a rival: settle, so a listing leaves out no acknowledged
          // key. An id that cannot be settled now (e.g. its rivals on two primaries, the third down)
          // is left out like a conflict rather than failing the whole listing.
          void Promise.allSettled(unsettledIds.map((id) => this.settle(id))).then((settled) => {
            for (const r of settled) {
              if (r.status === "rejected") this.metrics.badAnswers += 1;
              else if (r.value !== null) out.push(r.value);
            }
            resolve(out);
          });
        });
      }
    });
  }

  /**
   * Decides which version of `id` the id keeps when rival versions of its client request exist (see
   * the top of this file), writes it settled to a write quorum and returns it (merged with what the
   * primaries hold of it); null when no primary holds any version. UNAVAILABLE when a write quorum
   * cannot be reached, or no version can be chosen within the rounds.
   */
  settle(id: string): Promise<ReplicatedKey | null> {
    const running = this.settling.get(id);
    if (running !== undefined) return running;
    const run = this.settleRounds(id).finally(() => this.settling.delete(id));
    this.settling.set(id, run);
    return run;
  }

  /** settle, in the background (after a rival refusal); failures wait for the next trigger. */
  private settleSoon(id: string): void {
    if (this.settling.has(id)) return;
    this.settle(id).catch(() => {});
  }

  private async settleRounds(id: string): Promise<ReplicatedKey | null> {
    this.metrics.settles += 1;
    const rounds = this.options.settleRounds ?? 3;
    for (let round = 0; round < rounds; round++) {
      const { versions, needed, allHold } = await this.versionsOf(id);
      if (versions.length === 0) return null;
      const settled = versions.filter((v) => v.record.settled === true);
      if (settled.length > 1)
        throw new LockboxError("DATA_LOSS", `key ${id}: two rival versions are settled`);
      let chosen = settled[0] ?? versions.find((v) => v.holders >= needed);
      if (chosen === undefined) {
        // No version holds a write quorum, so none was acknowledged: the earliest attempt's goes on.
        // When every primary holds some version, none can ever reach a quorum (a replica never
        // swaps one unsettled rival for another), so the earliest is settled at once; otherwise it
        // first goes to the primaries holding nothing, and a version that gets there first wins.
        const earliest = [...versions].sort((a, b) => compareStamps(a.record.created, b.record.created))[0]!;
        if (allHold) chosen = earliest;
        else
          try {
            await this.write(earliest.record);
          } catch (e) {
            if (e instanceof LockboxError && e.code === "ALREADY_EXISTS") continue; // another one got there
            throw e;
          }
        chosen = earliest;
      }
      // Settled, no rival left and on a write quorum: nothing to do. Otherwise write it settled, which
      // replaces the rivals and completes a settle that stopped half way.
      if (chosen.record.settled === true && versions.length === 1 && chosen.holders >= needed)
        return chosen.record;
      const final: ReplicatedKey = { ...chosen.record, settled: true };
      await this.write(final);
      return final;
    }
    throw new LockboxError("UNAVAILABLE", `key ${id}: rival versions not settled within ${rounds} rounds`);
  }

  /**
   * Every up primary's version of `id`, grouped by body (replicated-key.ts sameBody), each group
   * merged and counted by the primaries holding it. UNAVAILABLE unless a read quorum answered.
   */
  private async versionsOf(id: string): Promise<{
    versions: { record: ReplicatedKey; holders: number }[];
    needed: number;
    /** Every primary answered, each with a version. */
    allHold: boolean;
  }> {
    const { placement, sender } = this.options;
    const partition = placement.partitionOfKey(id);
    const primaries = placement.primaries(partition);
    const quorum = new PlaceQuorum(primaries);
    const answers = await Promise.all(
      primaries
        .filter((p) => placement.isUp(p))
        .map(async (peer) => {
          const r = await sender.request(peer, { kind: "get", partition, id });
          return r.ok && r.kind === "get" ? this.checkAnswer(id, r) : undefined;
        }),
    );
    const versions: { record: ReplicatedKey; holders: number }[] = [];
    let answered = 0;
    let holding = 0;
    for (const a of answers) {
      if (a === undefined) continue;
      answered += 1;
      if (a === null) continue;
      holding += 1;
      const group = versions.find((v) => sameBody(v.record, a.record));
      if (group === undefined) versions.push({ record: a.record, holders: 1 });
      else {
        group.record = mergeKeys(group.record, a.record);
        group.holders += 1;
      }
    }
    if (answered < quorum.needed)
      throw new LockboxError("UNAVAILABLE", `key ${id}: ${answered} of ${quorum.needed} primaries answered`);
    return { versions, needed: quorum.needed, allHold: holding === primaries.length };
  }

  /**
   * Is `merged` an unsettled version of a client request's key held by fewer than `writeNeeded` of
   * the answers? Then it may not be the version a settle keeps (a rival may sit on a primary that
   * did not answer), so it must be settled before it is served.
   */
  private mayBeOutvoted(
    merged: ReplicatedKey,
    versions: readonly ReplicatedKey[],
    writeNeeded: number,
  ): boolean {
    if (merged.fields.request === undefined || merged.settled === true) return false;
    return versions.filter((v) => sameBody(v, merged)).length < writeNeeded;
  }

  /**
   * A put of `bytes`, encoded from `record` just now. To this peer itself it also carries `record`,
   * so the local replica does not decode what was just encoded (Replica.handleLocal); `record` must
   * not change while the write runs, which holds for every caller (records are built anew per write).
   */
  private putItem(
    partition: number,
    bytes: Uint8Array,
    record: ReplicatedKey,
    to: string,
    hintFor?: string,
  ): ReplicaItem {
    const item: ReplicaItem = { kind: "put", partition, record: bytes };
    if (hintFor !== undefined) item.hintFor = hintFor;
    if (to === this.options.sender.self) item.decoded = record;
    return item;
  }

  /**
   * An answer's record if it is a sound version of `id`; undefined if it must not count. Decodes
   * only what it must: the local replica's answer carries the record it checked (`decoded`),
   * and an answer of the same bytes as an `earlier` one (the common case: replicas agree) shares that
   * one's record, since the same bytes decode to the same record.
   */
  private checkAnswer(
    id: string,
    answer: { record: Uint8Array | null; decoded?: ReplicatedKey },
    earlier: Iterable<{ bytes: Uint8Array; record: ReplicatedKey } | null> = [],
  ): { bytes: Uint8Array; record: ReplicatedKey } | null | undefined {
    const record = answer.record;
    if (record === null) return null;
    if (answer.decoded !== undefined && answer.decoded.fields.id === id)
      return { bytes: record, record: answer.decoded };
    for (const e of earlier) {
      if (e !== null && bytesEqual(e.bytes, record)) return { bytes: record, record: e.record };
    }
    try {
      const k = decodeReplicatedKey(record);
      if (k.fields.id === id) return { bytes: record, record: k };
    } catch (e) {
      if (!(e instanceof ReplicationError)) throw e;
    }
    this.metrics.badAnswers += 1;
    return undefined;
  }

  /** Read repair: pushes the merge to every answering primary whose version differs. */
  private repair(
    partition: number,
    answers: Map<string, { bytes: Uint8Array; record: ReplicatedKey } | null>,
    merged: () => ReplicatedKey | null,
  ): void {
    // Every asked primary answered the same bytes (or all hold nothing): nothing to repair.
    const all = [...answers.values()];
    const first = all[0];
    if (
      first !== undefined &&
      all.every((a) => (a === null ? first === null : first !== null && bytesEqual(a.bytes, first.bytes)))
    )
      return;
    let m: ReplicatedKey | null;
    try {
      m = merged();
    } catch {
      return; // a conflict: anti-entropy cannot fix it either; the replicas keep their versions
    }
    if (m === null) return;
    const bytes = encodeReplicatedKey(m);
    for (const [peer, a] of answers) {
      if (a !== null && bytesEqual(a.bytes, bytes)) continue;
      this.metrics.repairs += 1;
      void this.options.sender.request(peer, this.putItem(partition, bytes, m, peer));
    }
  }
}
