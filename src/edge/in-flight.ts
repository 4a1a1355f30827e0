/**
 * Calls of one identity being worked on at once, bounded (EdgeLimits.callsInFlightPerIdentityMax):
 * one authenticated caller cannot make the peer hold an unbounded number of calls. Both edges take
 * a slot before they read a call's body and give it back when the call ends; a gRPC identity and a
 * REST one of the same name share the bound when they share one InFlightLimit.
 */
export class InFlightLimit {
  private readonly counts = new Map<string, number>();

  constructor(readonly perIdentityMax: number) {}

  /** A release function, or undefined when `identity` already has perIdentityMax calls in flight. */
  acquire(identity: string): (() => void) | undefined {
    const n = this.counts.get(identity) ?? 0;
    if (n >= this.perIdentityMax) return undefined;
    this.counts.set(identity, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.counts.get(identity) ?? 1) - 1;
      if (left <= 0) this.counts.delete(identity);
      else this.counts.set(identity, left);
    };
  }

  inFlight(identity: string): number {
    return this.counts.get(identity) ?? 0;
  }

  /** Why `identity` got no slot, in the words the refused client gets. */
  refusal(identity: string): string {
    return `identity ${identity} has ${this.inFlight(identity)} calls in flight (at most ${this.perIdentityMax}); retry later`;
  }
}
