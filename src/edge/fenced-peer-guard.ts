/**
 * A fenced peer serves no key calls (issue 9 item 5, DESIGN.md §5): its platform failed a re-quote, so
 * it is in a state no policy approves, and what it would hand out or store is what the fence exists to
 * stop. Every key operation, whichever edge it comes through (gRPC KeyService, the Barbican REST API),
 * is refused UNAVAILABLE before it touches anything: retryable, so a client (the TypeScript client
 * library does) retries on another peer. The message names the fence and its reason, never key
 * material. Health, status and the admin API keep working: an operator must be able to see why, and to
 * approve the new state.
 */
import { LockboxError } from "../errors.js";

/** The key operations (KeyService's methods, which the REST API calls too). */
export const KEY_OPERATIONS: ReadonlySet<string> = new Set([
  "createKey",
  "importKey",
  "getKey",
  "getKeyMetadata",
  "listKeys",
  "deleteKey",
  "cloneKey",
  "rekeyClone",
  "createGrant",
  "revokeGrant",
  "addConsumer",
  "removeConsumer",
  "listConsumers",
]);

/** The error a fenced peer answers every key call with. */
export function fencedPeerError(reason: string): LockboxError {
  return new LockboxError(
    "UNAVAILABLE",
    `this peer is fenced (${reason.replace(/[^\x20-\x7e]/g, "?").slice(0, 200)}): it serves no key calls until it attests again; retry on another peer`,
  );
}

/**
 * `keys` with every key operation refused while `fence()` names a reason (null: not fenced). Other
 * members pass through, called on `keys` itself (a class with private fields needs its own `this`).
 */
export function guardKeyCalls<T extends object>(keys: T, fence: () => string | null): T {
  return new Proxy(keys, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      const method = value as (...args: unknown[]) => unknown;
      if (typeof property !== "string" || !KEY_OPERATIONS.has(property)) return method.bind(target);
      return (...args: unknown[]): unknown => {
        const reason = fence();
        if (reason !== null) return Promise.reject(fencedPeerError(reason));
        return method.apply(target, args);
      };
    },
  });
}
