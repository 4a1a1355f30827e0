import { isNodeId, NODE_ID_RULE } from "../../node-id.js";
import {
  ConfChangeType,
  EntryType,
  MessageType,
  TERM_MAX,
  type ConfState,
  type Entry,
  type Message,
  type Refusal,
} from "./types.js";

/**
 * What can be checked of a message from the network without the node's state: first its shape
 * ("malformed", naming the first bad field), then what every honest sender's log satisfies (entries follow
 * `index` one by one, their terms never decrease from `logTerm`, and nothing carries a term newer than the
 * message's own). Returns the refusal, or null when the message may go on to the node's own checks.
 * The checks on what the node holds (senders, leaders, acks) are in raft-node.ts.
 */
export function validateMessage(m: unknown): Refusal | null {
  try {
    checkShape(m);
  } catch (e) {
    if (e instanceof Malformed) return { kind: "malformed", detail: e.message };
    throw e;
  }
  return checkClaims(m);
}

function checkClaims(m: Message): Refusal | null {
  if (m.term > TERM_MAX) return { kind: "termTooLarge", detail: `term ${m.term} above ${TERM_MAX}` };
  const votes = m.type === MessageType.Vote || m.type === MessageType.PreVote;
  if ((votes || m.type === MessageType.Append) && m.logTerm > m.term) {
    return { kind: "logTermAboveMessage", detail: `logTerm ${m.logTerm} above the message term ${m.term}` };
  }
  if (m.type === MessageType.Append) {
    let prevTerm = m.logTerm;
    for (let i = 0; i < m.entries.length; i++) {
      const e = m.entries[i]!;
      if (e.index !== m.index + 1 + i) {
        return { kind: "entryGap", detail: `entries[${i}].index ${e.index} does not follow ${m.index + i}` };
      }
      if (e.term > m.term) {
        return {
          kind: "entryTermAboveMessage",
          detail: `entries[${i}].term ${e.term} above the message term ${m.term}`,
        };
      }
      if (e.term < prevTerm) {
        return { kind: "entryTermDecreasing", detail: `entries[${i}].term ${e.term} below ${prevTerm}` };
      }
      prevTerm = e.term;
    }
  }
  if (m.type === MessageType.Snapshot && m.snapshot!.metadata.term > m.term) {
    return {
      kind: "snapshotTermAboveMessage",
      detail: `snapshot term ${m.snapshot!.metadata.term} above the message term ${m.term}`,
    };
  }
  return null;
}

function checkShape(m: unknown): asserts m is Message {
  if (typeof m !== "object" || m === null) bad("message", "not an object");
  const r = m as Record<string, unknown>;
  if (!Object.values(MessageType).includes(r.type as MessageType)) bad("type", String(r.type));
  nodeId(r.from, "from");
  nodeId(r.to, "to");
  for (const f of ["term", "logTerm", "index", "commit", "rejectHint", "rejectHintTerm"]) count(r[f], f);
  if (typeof r.reject !== "boolean") bad("reject", "not a boolean");
  bytes(r.context, "context");
  if (!Array.isArray(r.entries)) bad("entries", "not an array");
  (r.entries as unknown[]).forEach((e, i) => entry(e, `entries[${i}]`));
  if (r.snapshot !== null) {
    const s = r.snapshot as Record<string, unknown> | undefined;
    if (typeof s !== "object" || s === null) bad("snapshot", "not an object or null");
    bytes(s.data, "snapshot.data");
    const md = s.metadata as Record<string, unknown> | undefined;
    if (typeof md !== "object" || md === null) bad("snapshot.metadata", "not an object");
    count(md.index, "snapshot.metadata.index");
    count(md.term, "snapshot.metadata.term");
    confState(md.confState, "snapshot.metadata.confState");
  }
  if (r.type === MessageType.Snapshot && r.snapshot === null)
    bad("snapshot", "missing on a Snapshot message");
}

function entry(e: unknown, at: string): asserts e is Entry {
  if (typeof e !== "object" || e === null) bad(at, "not an object");
  const r = e as Record<string, unknown>;
  count(r.index, `${at}.index`);
  count(r.term, `${at}.term`);
  if ((r.index as number) < 1 || (r.term as number) < 1) bad(at, "index and term must be >= 1");
  bytes(r.data, `${at}.data`);
  if (r.type === EntryType.Normal) {
    if (r.confChange !== null || r.confState !== null) bad(at, "normal entry with a conf change");
  } else if (r.type === EntryType.ConfChange) {
    const cc = r.confChange as Record<string, unknown> | null;
    if (typeof cc !== "object" || cc === null) bad(`${at}.confChange`, "missing");
    if (!Object.values(ConfChangeType).includes(cc.type as ConfChangeType))
      bad(`${at}.confChange.type`, "unknown");
    nodeId(cc.nodeId, `${at}.confChange.nodeId`);
    bytes(cc.context, `${at}.confChange.context`);
    confState(r.confState, `${at}.confState`);
  } else bad(`${at}.type`, String(r.type));
}

function confState(c: unknown, at: string): asserts c is ConfState {
  if (typeof c !== "object" || c === null) bad(at, "not an object");
  const r = c as Record<string, unknown>;
  const seen = new Set<string>();
  for (const f of ["voters", "learners"]) {
    const list = r[f];
    if (!Array.isArray(list)) bad(`${at}.${f}`, "not an array");
    for (const id of list as string[]) {
      nodeId(id, `${at}.${f}[]`);
      if (seen.has(id)) bad(`${at}.${f}`, `duplicate member ${id}`);
      seen.add(id);
    }
  }
}

function nodeId(v: unknown, at: string): void {
  if (!isNodeId(v)) bad(at, `not a node id (${NODE_ID_RULE})`);
}

function count(v: unknown, at: string): void {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) bad(at, "not a non-negative safe integer");
}

function bytes(v: unknown, at: string): void {
  if (!(v instanceof Uint8Array)) bad(at, "not a Uint8Array");
}

class Malformed extends Error {}

function bad(field: string, why: string): never {
  throw new Malformed(`${field}: ${why}`);
}
