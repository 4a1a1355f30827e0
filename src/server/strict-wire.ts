/**
 * A strict protobuf reader in front of protobufjs (issue 8 item 3).
 * protobufjs decodes leniently: it replaces invalid UTF-8 instead of
 * refusing it, keeps the low 32 bits of an oversized varint for a uint32
 * field, and skips fields of the wrong wire type. Each of those hands the
 * key service a value other than the one sent. This walks the request bytes
 * against the message's descriptor first and refuses, naming the field:
 * a length-delimited field running past the end of its message, invalid
 * UTF-8 in a string, an integer out of its type's range, a varint longer
 * than 10 bytes, a wire type the field cannot have, groups, field number 0,
 * and nesting deeper than DEPTH_MAX. It never allocates more than the input.
 */
import { isUtf8 } from "node:buffer";

/** The subset of google.protobuf.DescriptorProto (as proto-loader gives it) this needs. */
export interface MessageDescriptor {
  readonly name?: string;
  readonly field?: readonly FieldDescriptor[];
}

export interface FieldDescriptor {
  readonly name: string;
  readonly number: number;
  readonly label?: string;
  /** "TYPE_STRING", "TYPE_UINT32", ... */
  readonly type: string;
  /** For messages and enums: the full name, e.g. "google.protobuf.Timestamp". */
  readonly typeName?: string;
}

/** The wire is not a valid encoding of the message; `field` names where (a dotted path). */
export class WireViolation extends Error {
  override readonly name = "WireViolation";
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

const DEPTH_MAX = 16;
const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

const VARINT_TYPES = new Set([
  "TYPE_INT32",
  "TYPE_INT64",
  "TYPE_UINT32",
  "TYPE_UINT64",
  "TYPE_SINT32",
  "TYPE_SINT64",
  "TYPE_BOOL",
  "TYPE_ENUM",
]);
const FIXED64_TYPES = new Set(["TYPE_FIXED64", "TYPE_SFIXED64", "TYPE_DOUBLE"]);
const FIXED32_TYPES = new Set(["TYPE_FIXED32", "TYPE_SFIXED32", "TYPE_FLOAT"]);

const U32_MAX = 0xffffffffn;
const I32_MIN = -(2n ** 31n);
const I32_MAX = 2n ** 31n - 1n;

/** Looks up a nested message's descriptor by its full name. */
export type DescriptorLookup = (typeName: string) => MessageDescriptor | undefined;

/** Each descriptor's fields by number, built once: descriptors live as long as the server. */
const FIELDS_BY_NUMBER = new WeakMap<MessageDescriptor, ReadonlyMap<number, FieldDescriptor>>();

function fieldsOf(message: MessageDescriptor): ReadonlyMap<number, FieldDescriptor> {
  let fields = FIELDS_BY_NUMBER.get(message);
  if (fields === undefined) {
    fields = new Map((message.field ?? []).map((f) => [f.number, f]));
    FIELDS_BY_NUMBER.set(message, fields);
  }
  return fields;
}

/** Throws WireViolation unless `bytes` is a strictly valid encoding of `message`. */
export function checkWire(bytes: Uint8Array, message: MessageDescriptor, lookup: DescriptorLookup): void {
  checkMessage(bytes, 0, bytes.length, message, lookup, "", 0);
}

function checkMessage(
  buf: Uint8Array,
  start: number,
  end: number,
  message: MessageDescriptor,
  lookup: DescriptorLookup,
  path: string,
  depth: number,
): void {
  if (depth > DEPTH_MAX)
    throw new WireViolation(path || "request", `nested deeper than ${DEPTH_MAX} messages`);
  const fields = fieldsOf(message);
  let pos = start;
  while (pos < end) {
    const tag = readVarint(buf, pos, end, path || "request", "a field tag");
    pos = varintEnd;
    const number = tag >> 3n;
    const wire = Number(tag & 7n);
    const field = number <= 0xffffffffn ? fields.get(Number(number)) : undefined;
    const name =
      field === undefined
        ? `${path ? `${path}.` : ""}field ${number}`
        : `${path ? `${path}.` : ""}${field.name}`;
    if (number === 0n || number > 536_870_911n) throw new WireViolation(name, "has an invalid field number");
    switch (wire) {
      case WIRE_VARINT: {
        const v = readVarint(buf, pos, end, name, "its value");
        pos = varintEnd;
        if (field !== undefined) {
          if (!VARINT_TYPES.has(field.type)) throw wrongWire(name, field);
          checkVarintRange(name, field.type, v);
        }
        break;
      }
      case WIRE_FIXED64:
      case WIRE_FIXED32: {
        const size = wire === WIRE_FIXED64 ? 8 : 4;
        if (field !== undefined && !(wire === WIRE_FIXED64 ? FIXED64_TYPES : FIXED32_TYPES).has(field.type))
          throw wrongWire(name, field);
        if (end - pos < size)
          throw new WireViolation(name, `is truncated: needs ${size} bytes, ${end - pos} left`);
        pos += size;
        break;
      }
      case WIRE_LEN: {
        const len = readVarint(buf, pos, end, name, "its length");
        pos = varintEnd;
        if (len > BigInt(end - pos))
          throw new WireViolation(
            name,
            `is truncated: claims ${len} bytes, ${end - pos} left in the message`,
          );
        const valueEnd = pos + Number(len);
        if (field !== undefined) checkLengthDelimited(buf, pos, valueEnd, field, lookup, name, depth);
        pos = valueEnd;
        break;
      }
      default:
        throw new WireViolation(name, `has wire type ${wire}, which lockbox messages never use`);
    }
  }
}

function checkLengthDelimited(
  buf: Uint8Array,
  start: number,
  end: number,
  field: FieldDescriptor,
  lookup: DescriptorLookup,
  name: string,
  depth: number,
): void {
  switch (field.type) {
    case "TYPE_STRING":
      if (!isUtf8(buf.subarray(start, end))) throw new WireViolation(name, "is not valid UTF-8");
      return;
    case "TYPE_BYTES":
      return;
    case "TYPE_MESSAGE": {
      const nested = lookup(field.typeName ?? "");
      if (nested === undefined)
        throw new WireViolation(name, `has an unknown message type ${field.typeName}`);
      checkMessage(buf, start, end, nested, lookup, name, depth + 1);
      return;
    }
    default:
      // A packed repeated scalar: every element must be valid for the type.
      if (field.label !== "LABEL_REPEATED") throw wrongWire(name, field);
      checkPacked(buf, start, end, field, name);
  }
}

function checkPacked(
  buf: Uint8Array,
  start: number,
  end: number,
  field: FieldDescriptor,
  name: string,
): void {
  if (VARINT_TYPES.has(field.type)) {
    let pos = start;
    while (pos < end) {
      const v = readVarint(buf, pos, end, name, "a packed element");
      checkVarintRange(name, field.type, v);
      pos = varintEnd;
    }
    return;
  }
  const size = FIXED64_TYPES.has(field.type) ? 8 : FIXED32_TYPES.has(field.type) ? 4 : 0;
  if (size === 0 || (end - start) % size !== 0) throw wrongWire(name, field);
}

function checkVarintRange(name: string, type: string, raw: bigint): void {
  switch (type) {
    case "TYPE_UINT32":
      if (raw > U32_MAX) throw new WireViolation(name, `is out of range for uint32 (${raw})`);
      return;
    case "TYPE_INT32":
    case "TYPE_ENUM": {
      // Negative int32 values are sign-extended to 64 bits on the wire.
      const signed = BigInt.asIntN(64, raw);
      if (signed < I32_MIN || signed > I32_MAX)
        throw new WireViolation(
          name,
          `is out of range for ${type === "TYPE_ENUM" ? "an enum" : "int32"} (${signed})`,
        );
      return;
    }
    case "TYPE_SINT32":
      if (raw > U32_MAX) throw new WireViolation(name, "is out of range for sint32");
      return;
    case "TYPE_BOOL":
      if (raw > 1n) throw new WireViolation(name, `is not a bool (${raw})`);
      return;
    default:
      return; // 64-bit types take any 64-bit varint
  }
}

/** Where the varint readVarint read last ends: set by every call (a result object per varint cost more than the check). */
let varintEnd = 0;

/** The one-byte varints (values below 128: most tags and lengths), made once instead of per read. */
const ONE_BYTE = Array.from({ length: 128 }, (_, i) => BigInt(i));

/** A base-128 varint of at most 10 bytes whose value fits 64 bits; sets varintEnd past it. */
function readVarint(buf: Uint8Array, pos: number, end: number, name: string, what: string): bigint {
  if (pos < end && buf[pos]! < 0x80) {
    varintEnd = pos + 1;
    return ONE_BYTE[buf[pos]!]!;
  }
  let value = 0n;
  for (let i = 0; i < 10; i++) {
    if (pos + i >= end) throw new WireViolation(name, `is truncated in ${what}`);
    const byte = buf[pos + i]!;
    if (i === 9 && byte > 1) throw new WireViolation(name, `has a varint larger than 64 bits in ${what}`);
    value |= BigInt(byte & 0x7f) << BigInt(7 * i);
    if ((byte & 0x80) === 0) {
      varintEnd = pos + i + 1;
      return value;
    }
  }
  throw new WireViolation(name, `has a varint longer than 10 bytes in ${what}`);
}

const wrongWire = (name: string, field: FieldDescriptor): WireViolation =>
  new WireViolation(
    name,
    `has the wrong wire type for a ${field.type.replace(/^TYPE_/, "").toLowerCase()} field`,
  );
