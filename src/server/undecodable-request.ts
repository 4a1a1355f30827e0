/**
 * A request whose bytes are not a valid protobuf message of the method's
 * type. grpc-js answers a throwing deserializer with INTERNAL before any
 * lockbox code runs; lockbox wants INVALID_ARGUMENT naming the field (a
 * client's mistake) and an audit line. So the deserializer never throws: it
 * returns this marker, and the call wrapper refuses it after authenticating
 * the caller.
 *
 * Before protobufjs sees the bytes they pass two checks: the method's size
 * limit (edge-limits.ts) and the strict wire check (strict-wire.ts), so a
 * lenient decode can never turn what was sent into something else.
 */
import type * as protoLoader from "@grpc/proto-loader";
import { LockboxError } from "../errors.js";
import { type DescriptorLookup, type MessageDescriptor, WireViolation, checkWire } from "./strict-wire.js";

const UNDECODABLE = Symbol("lockbox.undecodable-request");

export interface UndecodableRequest {
  readonly [UNDECODABLE]: true;
  /** INVALID_ARGUMENT for a bad encoding, RESOURCE_EXHAUSTED for one over the method's size limit. */
  readonly code: "INVALID_ARGUMENT" | "RESOURCE_EXHAUSTED";
  /** The request field at fault (dotted for nested fields), or "request". */
  readonly field: string;
  readonly reason: string;
}

export function isUndecodable(request: unknown): request is UndecodableRequest {
  return typeof request === "object" && request !== null && UNDECODABLE in request;
}

/** The call pipeline's validate step for a decoded request: throws the refusal of an undecodable one. */
export function refuseUndecodable(request: unknown): void {
  if (isUndecodable(request)) {
    const { code, field, reason } = request;
    throw new LockboxError(code, `${field}: ${reason}`, code === "INVALID_ARGUMENT" ? field : undefined);
  }
}

/** `service` with every method's request deserializer made strict, bounded and total. */
export function withTolerantDeserializers(
  service: protoLoader.ServiceDefinition,
  lookup: DescriptorLookup,
  bytesMaxOf: (path: string) => number | undefined,
): protoLoader.ServiceDefinition {
  const out: protoLoader.ServiceDefinition = {};
  for (const [name, method] of Object.entries(service)) {
    const decode = method.requestDeserialize;
    const descriptor = method.requestType.type as MessageDescriptor;
    const bytesMax = bytesMaxOf(method.path);
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        if (bytesMax !== undefined && bytes.length > bytesMax) {
          return undecodable(
            "RESOURCE_EXHAUSTED",
            "request",
            `is ${bytes.length} bytes; ${name} accepts at most ${bytesMax}`,
          );
        }
        try {
          checkWire(bytes, descriptor, lookup);
          return decode(bytes);
        } catch (err) {
          if (err instanceof WireViolation) return undecodable("INVALID_ARGUMENT", err.field, err.reason);
          // The decoder's message names a wire offset or type, never request content.
          const reason = err instanceof Error ? err.message.slice(0, 120) : "malformed";
          return undecodable(
            "INVALID_ARGUMENT",
            "request",
            `is not a valid ${name}Request message (${reason})`,
          );
        }
      },
    };
  }
  return out;
}

function undecodable(code: UndecodableRequest["code"], field: string, reason: string): UndecodableRequest {
  return { [UNDECODABLE]: true, code, field, reason };
}
