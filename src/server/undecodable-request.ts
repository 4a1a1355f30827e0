/**
 * A request whose bytes are not a valid protobuf message of the method's
 * type. grpc-js answers a throwing deserializer with INTERNAL before any
 * lockbox code runs; lockbox wants INVALID_ARGUMENT (a client's mistake) and
 * an audit line. So the deserializer never throws: it returns this marker,
 * and the call wrapper refuses it after authenticating the caller.
 */
import type * as protoLoader from "@grpc/proto-loader";

const UNDECODABLE = Symbol("lockbox.undecodable-request");

export interface UndecodableRequest {
  readonly [UNDECODABLE]: true;
  readonly reason: string;
}

export function isUndecodable(request: unknown): request is UndecodableRequest {
  return typeof request === "object" && request !== null && UNDECODABLE in request;
}

/** `service` with every method's request deserializer made total. */
export function withTolerantDeserializers(
  service: protoLoader.ServiceDefinition,
): protoLoader.ServiceDefinition {
  const out: protoLoader.ServiceDefinition = {};
  for (const [name, method] of Object.entries(service)) {
    const decode = method.requestDeserialize;
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes);
        } catch (err) {
          // The decoder's message names a wire offset or type, never request content.
          const reason = err instanceof Error ? err.message.slice(0, 120) : "malformed";
          return { [UNDECODABLE]: true, reason } satisfies UndecodableRequest;
        }
      },
    };
  }
  return out;
}
