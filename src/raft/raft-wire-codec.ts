/**
 * Converts raft core messages (cluster/raft/core/types.ts) to and from the plain objects that
 * @grpc/proto-loader serialises as lockbox.v1.RaftMessage. Decoding checks the wire shape of bytes from
 * the network: every field's type and range, throwing WireMessageInvalid naming the field; the transport
 * drops such a message with a log line and keeps going. Whether the content makes sense for raft is
 * checked by the core (RaftNode.step), once, whatever the transport.
 */
import {
  ConfChangeType,
  EntryType,
  MessageType,
  type ConfChange,
  type ConfState,
  type Entry,
  type Message,
  type Snapshot,
} from "../../cluster/raft/core/types.js";
import { isNodeId, NODE_ID_RULE } from "../../cluster/node-id.js";

/** Limits on what one received message may hold, beyond gRPC's message size cap. */
export const MEMBERS_MAX = 256;

export class WireMessageInvalid extends Error {
  override readonly name = "WireMessageInvalid";
  readonly code = "WIRE_MESSAGE_INVALID";
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

// Wire shapes, as proto-loader produces them with keepCase, longs: Number, defaults: true.
export interface WireConfState {
  voters: string[];
  learners: string[];
}
export interface WireConfChange {
  type: number;
  node_id: string;
  context: Uint8Array;
}
export interface WireEntry {
  index: number;
  term: number;
  type: number;
  data: Uint8Array;
  conf_change: WireConfChange | null;
  conf_state: WireConfState | null;
}
export interface WireSnapshot {
  index: number;
  term: number;
  conf_state: WireConfState | null;
  data: Uint8Array;
}
export interface WireMessage {
  type: number;
  from: string;
  to: string;
  term: number;
  log_term: number;
  index: number;
  entries: WireEntry[];
  commit: number;
  reject: boolean;
  reject_hint: number;
  reject_hint_term: number;
  snapshot: WireSnapshot | null;
  context: Uint8Array;
}
/** lockbox.v1.RaftRequest: one batch of messages from one sender. */
export interface WireBatch {
  from: string;
  messages: WireMessage[];
}

export function encodeMessage(m: Message): WireMessage {
  return {
    type: m.type,
    from: m.from,
    to: m.to,
    term: m.term,
    log_term: m.logTerm,
    index: m.index,
    entries: m.entries.map(encodeEntry),
    commit: m.commit,
    reject: m.reject,
    reject_hint: m.rejectHint,
    reject_hint_term: m.rejectHintTerm,
    snapshot: m.snapshot === null ? null : encodeSnapshot(m.snapshot),
    context: m.context,
  };
}

function encodeEntry(e: Entry): WireEntry {
  return {
    index: e.index,
    term: e.term,
    type: e.type,
    data: e.data,
    conf_change:
      e.confChange === null
        ? null
        : { type: e.confChange.type, node_id: e.confChange.nodeId, context: e.confChange.context },
    conf_state: e.confState,
  };
}

function encodeSnapshot(s: Snapshot): WireSnapshot {
  return { index: s.metadata.index, term: s.metadata.term, conf_state: s.metadata.confState, data: s.data };
}

/**
 * Checks a received wire message's shape (every field's type and range) and returns the core message;
 * throws WireMessageInvalid. What the message claims (entries following `index`, terms, acks, senders) is
 * the core's to judge: RaftNode.step() refuses and counts what no honest peer sends.
 */
export function decodeMessage(w: unknown): Message {
  const m = obj(w, "message");
  const type = num(m.type, "type");
  if (!MESSAGE_TYPES.has(type)) throw new WireMessageInvalid("type", `unknown message type ${type}`);
  const entries = arr(m.entries, "entries").map((e, i) => decodeEntry(e, `entries[${i}]`));
  const message: Message = {
    type: type as Message["type"],
    from: nodeId(m.from, "from"),
    to: nodeId(m.to, "to"),
    term: num(m.term, "term"),
    logTerm: num(m.log_term, "log_term"),
    index: num(m.index, "index"),
    entries,
    commit: num(m.commit, "commit"),
    reject: bool(m.reject, "reject"),
    rejectHint: num(m.reject_hint, "reject_hint"),
    rejectHintTerm: num(m.reject_hint_term, "reject_hint_term"),
    snapshot: m.snapshot === null || m.snapshot === undefined ? null : decodeSnapshot(m.snapshot),
    context: bytes(m.context, "context"),
  };
  return message;
}

const MESSAGE_TYPES = new Set<number>(Object.values(MessageType));
const ENTRY_TYPES = new Set<number>(Object.values(EntryType));
const CONF_CHANGE_TYPES = new Set<number>(Object.values(ConfChangeType));

function decodeEntry(w: unknown, at: string): Entry {
  const e = obj(w, at);
  const type = num(e.type, `${at}.type`);
  if (!ENTRY_TYPES.has(type)) throw new WireMessageInvalid(`${at}.type`, `unknown entry type ${type}`);
  const hasCc = e.conf_change !== null && e.conf_change !== undefined;
  const hasCs = e.conf_state !== null && e.conf_state !== undefined;
  if (type === EntryType.ConfChange && (!hasCc || !hasCs)) {
    throw new WireMessageInvalid(
      `${at}.conf_change`,
      "membership entry without its change and configuration",
    );
  }
  if (type === EntryType.Normal && (hasCc || hasCs)) {
    throw new WireMessageInvalid(`${at}.conf_change`, "normal entry carries a membership change");
  }
  return {
    index: num(e.index, `${at}.index`),
    term: num(e.term, `${at}.term`),
    type: type as Entry["type"],
    data: bytes(e.data, `${at}.data`),
    confChange: hasCc ? decodeConfChange(e.conf_change, `${at}.conf_change`) : null,
    confState: hasCs ? decodeConfState(e.conf_state, `${at}.conf_state`) : null,
  };
}

function decodeConfChange(w: unknown, at: string): ConfChange {
  const c = obj(w, at);
  const type = num(c.type, `${at}.type`);
  if (!CONF_CHANGE_TYPES.has(type)) throw new WireMessageInvalid(`${at}.type`, `unknown change type ${type}`);
  return {
    type: type as ConfChange["type"],
    nodeId: nodeId(c.node_id, `${at}.node_id`),
    context: bytes(c.context, `${at}.context`),
  };
}

function decodeConfState(w: unknown, at: string): ConfState {
  const c = obj(w, at);
  const voters = arr(c.voters, `${at}.voters`).map((v, i) => nodeId(v, `${at}.voters[${i}]`));
  const learners = arr(c.learners, `${at}.learners`).map((v, i) => nodeId(v, `${at}.learners[${i}]`));
  if (voters.length + learners.length > MEMBERS_MAX)
    throw new WireMessageInvalid(at, `more than ${MEMBERS_MAX} members`);
  const all = new Set([...voters, ...learners]);
  if (all.size !== voters.length + learners.length)
    throw new WireMessageInvalid(at, "a member is listed twice");
  return { voters, learners };
}

function decodeSnapshot(w: unknown): Snapshot {
  const s = obj(w, "snapshot");
  if (s.conf_state === null || s.conf_state === undefined) {
    throw new WireMessageInvalid("snapshot.conf_state", "missing");
  }
  return {
    metadata: {
      index: num(s.index, "snapshot.index"),
      term: num(s.term, "snapshot.term"),
      confState: decodeConfState(s.conf_state, "snapshot.conf_state"),
    },
    data: bytes(s.data, "snapshot.data"),
  };
}

function obj(v: unknown, at: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new WireMessageInvalid(at, "not a message");
  return v as Record<string, unknown>;
}

function arr(v: unknown, at: string): unknown[] {
  if (!Array.isArray(v)) throw new WireMessageInvalid(at, "not a list");
  return v;
}

/** Indexes and terms: non-negative safe integers (a uint64 above 2^53 arrives imprecise and is refused). */
function num(v: unknown, at: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw new WireMessageInvalid(at, "not a non-negative integer below 2^53");
  }
  return v;
}

function bool(v: unknown, at: string): boolean {
  if (typeof v !== "boolean") throw new WireMessageInvalid(at, "not a boolean");
  return v;
}

function bytes(v: unknown, at: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new WireMessageInvalid(at, "not bytes");
  return v;
}

function nodeId(v: unknown, at: string): string {
  if (!isNodeId(v)) throw new WireMessageInvalid(at, `not a node id (${NODE_ID_RULE})`);
  return v;
}
