/**
 * The verifier's table of joins in progress, keyed by a random session id.
 * Anyone can start a join (the joiner has no certificate yet), so the table
 * is the one place unauthenticated callers make a member hold state; it is
 * bounded in entries and in time: at most `sessionsMax` live sessions, each
 * gone after `sessionTtlMs` whatever its step, and starts limited to
 * `startsPerSecondMax` (a start costs an RSA encryption and a certificate
 * chain check, and a refused one an audit record). A session is taken out
 * of the table by the step that consumes it, so a nonce is used once.
 */
import { randomBytes } from "node:crypto";
import type { Clock } from "../time/clock.js";

export interface JoinSessionLimits {
  /** Joins in progress at once on this verifier. */
  readonly sessionsMax: number;
  /** A session's whole life, from begin to attest. */
  readonly sessionTtlMs: number;
  /** How long a nonce may be answered; shorter than the session's life. */
  readonly nonceTtlMs: number;
  /** Joins begun per second on this verifier (refused and accepted alike). */
  readonly startsPerSecondMax: number;
}

export const JOIN_SESSION_LIMITS_DEFAULT: JoinSessionLimits = {
  sessionsMax: 16,
  sessionTtlMs: 30_000,
  nonceTtlMs: 10_000,
  startsPerSecondMax: 10,
};

export const SESSION_ID_BYTES = 16;

export function joinSessionLimits(overrides: Partial<JoinSessionLimits> = {}): JoinSessionLimits {
  const limits = { ...JOIN_SESSION_LIMITS_DEFAULT, ...overrides };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1)
      throw new RangeError(`join limit ${name} must be a positive integer`);
  }
  if (limits.nonceTtlMs > limits.sessionTtlMs)
    throw new RangeError("join limit nonceTtlMs must not exceed sessionTtlMs");
  return limits;
}

export type SessionLookup<S> =
  | { readonly found: true; readonly session: S }
  | { readonly found: false; readonly why: "session-unknown" | "session-expired" };

export class JoinSessions<S> {
  readonly #sessions = new Map<string, { session: S; expiresAt: number }>();
  /** Recently expired ids, so a late step is told "expired" rather than "unknown"; bounded like the table. */
  readonly #expired = new Set<string>();
  #windowStart = 0;
  #startsInWindow = 0;

  constructor(
    private readonly limits: JoinSessionLimits,
    private readonly clock: Clock,
  ) {}

  /** A new session, or why not ("joins-busy"): the table is full. */
  open(session: S): { id: Uint8Array } | { busy: string } {
    const now = this.clock.now().getTime();
    this.#sweep(now);
    if (this.#sessions.size >= this.limits.sessionsMax) {
      return { busy: `${this.#sessions.size} joins in progress (at most ${this.limits.sessionsMax})` };
    }
    const id = randomBytes(SESSION_ID_BYTES);
    this.#sessions.set(id.toString("hex"), { session, expiresAt: now + this.limits.sessionTtlMs });
    return { id };
  }

  /** Counts a join's start against startsPerSecondMax; false when this second's budget is spent. */
  admitStart(): boolean {
    const now = this.clock.now().getTime();
    if (now - this.#windowStart >= 1000) {
      this.#windowStart = now;
      this.#startsInWindow = 0;
    }
    if (this.#startsInWindow >= this.limits.startsPerSecondMax) return false;
    this.#startsInWindow++;
    return true;
  }

  /** The live session `id` (left in the table). */
  get(id: Uint8Array): SessionLookup<S> {
    const now = this.clock.now().getTime();
    this.#sweep(now);
    const key = Buffer.from(id).toString("hex");
    const entry = this.#sessions.get(key);
    if (entry !== undefined) return { found: true, session: entry.session };
    return { found: false, why: this.#expired.has(key) ? "session-expired" : "session-unknown" };
  }

  /** Takes the session out of the table: its next step can never be made again. */
  take(id: Uint8Array): SessionLookup<S> {
    const found = this.get(id);
    if (found.found) this.#sessions.delete(Buffer.from(id).toString("hex"));
    return found;
  }

  delete(id: Uint8Array): void {
    this.#sessions.delete(Buffer.from(id).toString("hex"));
  }

  get size(): number {
    this.#sweep(this.clock.now().getTime());
    return this.#sessions.size;
  }

  #sweep(now: number): void {
    for (const [key, entry] of this.#sessions) {
      if (entry.expiresAt > now) continue;
      this.#sessions.delete(key);
      if (this.#expired.size >= this.limits.sessionsMax * 4)
        this.#expired.delete(this.#expired.values().next().value!);
      this.#expired.add(key);
    }
  }
}
