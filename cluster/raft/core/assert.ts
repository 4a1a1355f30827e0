import { RaftInvariantError } from "./types.js";

/** Throws RaftInvariantError when an invariant of the core does not hold (TigerBeetle-style dense asserts). */
export function assert(condition: boolean, what: string | (() => string)): asserts condition {
  if (!condition) throw new RaftInvariantError(typeof what === "string" ? what : what());
}
