/**
 * gRPC services registered when the server starts but built on their first call. Server
 * reflection and health come from libraries that parse their .proto files when loaded, and
 * reflection also decodes and re-encodes every descriptor it describes when constructed: together
 * about a fifth of a peer's start (issue 8: a peer restarts to serving in under a second), for
 * calls that a tool or a probe makes, if ever, later. Their method shapes are few and fixed, so
 * they are declared here; the library is loaded (synchronously: a deserializer cannot wait) and
 * its service built when a call first arrives, and that call and every later one go to it.
 */
import type * as grpc from "@grpc/grpc-js";

/** A method's shape: what grpc-js needs to know before any call (not how to decode it). */
export interface LazyMethodShape {
  requestStream: boolean;
  responseStream: boolean;
}

/** Services by full name ("grpc.health.v1.Health") -> methods by name ("Check") -> shape. */
export type LazyServiceShapes = Readonly<Record<string, Readonly<Record<string, LazyMethodShape>>>>;

/** A library's `addToServer(server)`, called once on a stand-in server that records what it adds. */
export type AddToServer = (server: Pick<grpc.Server, "addService">) => void;

interface BuiltMethod {
  definition: grpc.MethodDefinition<unknown, unknown>;
  handler: grpc.UntypedHandleCall;
}

/**
 * Adds the services of `shapes` to `server`; `build` runs on their first call (or first message to
 * decode) and must add exactly those methods with those shapes, else that call fails loudly.
 */
export function addLazyServices(server: grpc.Server, shapes: LazyServiceShapes, build: AddToServer): void {
  let built: Map<string, BuiltMethod> | undefined;
  const method = (path: string): BuiltMethod => {
    built ??= captureMethods(build);
    const m = built.get(path);
    if (m === undefined) throw new Error(`lazily built gRPC service has no method ${path}`);
    return m;
  };
  for (const [serviceName, methods] of Object.entries(shapes)) {
    const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
    const implementation: grpc.UntypedServiceImplementation = {};
    for (const [name, shape] of Object.entries(methods)) {
      const path = `/${serviceName}/${name}`;
      definition[name] = {
        path,
        requestStream: shape.requestStream,
        responseStream: shape.responseStream,
        requestSerialize: (value: unknown) => method(path).definition.requestSerialize(value),
        requestDeserialize: (bytes: Buffer) => method(path).definition.requestDeserialize(bytes),
        responseSerialize: (value: unknown) => method(path).definition.responseSerialize(value),
        responseDeserialize: (bytes: Buffer) => method(path).definition.responseDeserialize(bytes),
      };
      implementation[name] = ((call: unknown, callback?: unknown) =>
        (method(path).handler as (call: unknown, callback?: unknown) => void)(
          call,
          callback,
        )) as grpc.UntypedHandleCall;
    }
    server.addService(definition, implementation);
  }
}

/** Runs `addToServer` against a recorder; each added method by path, with its handler. */
function captureMethods(addToServer: AddToServer): Map<string, BuiltMethod> {
  const methods = new Map<string, BuiltMethod>();
  addToServer({
    addService(definition: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation) {
      for (const [name, m] of Object.entries(definition)) {
        // grpc-js finds a handler by the method's name or its original (lowerCamel) name.
        const handler = implementation[name] ?? (m.originalName ? implementation[m.originalName] : undefined);
        if (handler === undefined) throw new Error(`gRPC service method ${m.path} has no handler`);
        methods.set(m.path, { definition: m as grpc.MethodDefinition<unknown, unknown>, handler });
      }
    },
  });
  return methods;
}
