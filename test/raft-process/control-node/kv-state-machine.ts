/**
 * A small replicated key-value map: the state machine the raft process tests and the raft benchmark
 * drive. The real control state (members, ring, epochs) replaces it later; it exists so the driver,
 * storage and transport can be proven end to end with something whose history is easy to check.
 *
 * Commands travel in the raft log as JSON (`{"op":"set","key":"a","value":"1"}`). A command that does
 * not parse is still a committed entry: every replica must treat it the same, so apply() returns an
 * error result for it and changes nothing, rather than throwing.
 */
import type { StateMachine } from "../../../cluster/raft/driver/state-machine.js";

export type KvCommand = { op: "set"; key: string; value: string } | { op: "delete"; key: string };

export type KvApplyResult = { ok: true; existed?: boolean } | { ok: false; reason: string };

/** Limits on what a command may carry, so a bad proposal cannot blow up every replica's memory. */
export const KV_KEY_BYTES_MAX = 1024;
// A set command must fit in one proposal of the control node (16 KiB), with room for its key and JSON.
export const KV_VALUE_BYTES_MAX = 12 * 1024;

export class KvCommandInvalid extends Error {
  override readonly name = "KvCommandInvalid";
  readonly code = "KV_COMMAND_INVALID";
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Checks a command and returns its log encoding; throws KvCommandInvalid naming the bad field. */
export function encodeKvCommand(cmd: KvCommand): Uint8Array {
  validateKvCommand(cmd);
  return encoder.encode(JSON.stringify(cmd));
}

export function decodeKvCommand(data: Uint8Array): KvCommand {
  let parsed: unknown;
  try {
    parsed = JSON.parse(decoder.decode(data));
  } catch {
    throw new KvCommandInvalid("command", "not UTF-8 JSON");
  }
  validateKvCommand(parsed);
  return parsed;
}

function validateKvCommand(v: unknown): asserts v is KvCommand {
  if (typeof v !== "object" || v === null) throw new KvCommandInvalid("command", "not an object");
  const c = v as Record<string, unknown>;
  if (c.op !== "set" && c.op !== "delete") throw new KvCommandInvalid("op", "must be set or delete");
  if (typeof c.key !== "string" || c.key.length === 0) throw new KvCommandInvalid("key", "must be non-empty");
  if (encoder.encode(c.key).length > KV_KEY_BYTES_MAX) {
    throw new KvCommandInvalid("key", `longer than ${KV_KEY_BYTES_MAX} bytes`);
  }
  if (c.op === "set") {
    if (typeof c.value !== "string") throw new KvCommandInvalid("value", "must be a string");
    if (encoder.encode(c.value).length > KV_VALUE_BYTES_MAX) {
      throw new KvCommandInvalid("value", `longer than ${KV_VALUE_BYTES_MAX} bytes`);
    }
  }
}

export class KvStateMachine implements StateMachine<KvApplyResult> {
  #map = new Map<string, string>();
  #appliedIndex = 0;

  get appliedIndex(): number {
    return this.#appliedIndex;
  }

  get size(): number {
    return this.#map.size;
  }

  /** Local read: callers that need linearizability go through the driver's read() first. */
  get(key: string): string | undefined {
    return this.#map.get(key);
  }

  apply(data: Uint8Array, index: number): KvApplyResult {
    if (index <= this.#appliedIndex) {
      throw new Error(`kv: apply index ${index} not above applied ${this.#appliedIndex}`);
    }
    this.#appliedIndex = index;
    let cmd: KvCommand;
    try {
      cmd = decodeKvCommand(data);
    } catch (e) {
      return { ok: false, reason: e instanceof KvCommandInvalid ? e.message : "invalid command" };
    }
    if (cmd.op === "set") {
      this.#map.set(cmd.key, cmd.value);
      return { ok: true };
    }
    return { ok: true, existed: this.#map.delete(cmd.key) };
  }

  snapshot(): Uint8Array {
    const entries = [...this.#map.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return encoder.encode(JSON.stringify({ appliedIndex: this.#appliedIndex, entries }));
  }

  restore(bytes: Uint8Array): void {
    const { appliedIndex, map } = parseKvSnapshot(bytes);
    this.#map = map;
    this.#appliedIndex = appliedIndex;
  }

  checkSnapshot(bytes: Uint8Array, index: number): void {
    const { appliedIndex } = parseKvSnapshot(bytes);
    // apply() refuses indexes at or below appliedIndex, so an image claiming more than its log index
    // would make every later entry fail.
    if (appliedIndex > index) {
      throw new KvCommandInvalid("snapshot", `applied index ${appliedIndex} beyond its log index ${index}`);
    }
  }
}

function parseKvSnapshot(bytes: Uint8Array): { appliedIndex: number; map: Map<string, string> } {
  let parsed: { appliedIndex?: unknown; entries?: unknown } | null;
  try {
    parsed = JSON.parse(decoder.decode(bytes)) as typeof parsed;
  } catch {
    throw new KvCommandInvalid("snapshot", "not UTF-8 JSON");
  }
  if (
    typeof parsed !== "object" ||
    parsed === null ||
    !Number.isSafeInteger(parsed.appliedIndex) ||
    (parsed.appliedIndex as number) < 0 ||
    !Array.isArray(parsed.entries)
  ) {
    throw new KvCommandInvalid("snapshot", "not a kv snapshot");
  }
  const map = new Map<string, string>();
  for (const pair of parsed.entries as unknown[]) {
    if (!Array.isArray(pair) || typeof pair[0] !== "string" || typeof pair[1] !== "string") {
      throw new KvCommandInvalid("snapshot", "entry is not a [key, value] pair");
    }
    map.set(pair[0], pair[1]);
  }
  return { appliedIndex: parsed.appliedIndex as number, map };
}
