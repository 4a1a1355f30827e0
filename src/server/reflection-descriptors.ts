/**
 * Repairs the file descriptors that server reflection hands out. proto-loader
 * regroups files by package ("lockbox_v1.proto", "google_protobuf.proto")
 * and leaves each regrouped file's `dependency` list empty, although
 * lockbox_v1.proto uses google.protobuf.Timestamp. @grpc/reflection sends
 * both files but keeps that empty list, so strict clients (buf curl,
 * grpcurl: Go's protodesc) cannot link the schema and report the service as
 * missing. This adds the missing imports, computed from the type references.
 */
import type { PackageDefinition } from "@grpc/proto-loader";
import descriptor from "protobufjs/ext/descriptor/index.js";

interface FileDescriptor {
  name?: string;
  package?: string;
  dependency?: string[];
  messageType?: MessageDescriptor[];
  service?: { method?: { inputType?: string; outputType?: string }[] }[];
  extension?: { typeName?: string; extendee?: string }[];
}

interface MessageDescriptor {
  field?: { typeName?: string }[];
  extension?: { typeName?: string; extendee?: string }[];
  nestedType?: MessageDescriptor[];
}

/** A copy of `definition` whose file descriptors list the files they reference. */
export function withLinkedFileDescriptors(definition: PackageDefinition): PackageDefinition {
  // Message and enum entries carry the descriptors of every loaded file (what reflection reads).
  const encoded = new Map<string, Uint8Array>();
  for (const entry of Object.values(definition)) {
    for (const bytes of fileDescriptorsOf(entry)) encoded.set(Buffer.from(bytes).toString("base64"), bytes);
  }
  const files = [...encoded].map(([key, bytes]) => ({
    key,
    bytes,
    file: descriptor.FileDescriptorProto.toObject(
      descriptor.FileDescriptorProto.decode(bytes),
    ) as FileDescriptor,
  }));
  const fileOfPackage = new Map(files.map(({ file }) => [file.package ?? "", file.name ?? ""]));
  const fixed = new Map<string, Uint8Array>();
  for (const { key, bytes, file } of files) {
    const deps = new Set(file.dependency ?? []);
    for (const ref of typeReferences(file)) {
      const target = fileOfReference(ref, fileOfPackage);
      if (target !== undefined && target !== file.name) deps.add(target);
    }
    const unchanged = deps.size === (file.dependency ?? []).length;
    const message = descriptor.FileDescriptorProto.fromObject({ ...file, dependency: [...deps] });
    fixed.set(key, unchanged ? bytes : descriptor.FileDescriptorProto.encode(message).finish());
  }
  const out: PackageDefinition = {};
  for (const [name, entry] of Object.entries(definition)) {
    const list = fileDescriptorsOf(entry);
    out[name] =
      list.length === 0
        ? entry
        : ({
            ...entry,
            fileDescriptorProtos: list.map((b) => fixed.get(Buffer.from(b).toString("base64"))!),
          } as typeof entry);
  }
  return out;
}

/** The descriptors of a message or enum entry; services (no such field) have none. */
function fileDescriptorsOf(entry: unknown): Uint8Array[] {
  if (typeof entry !== "object" || entry === null) return [];
  const list = (entry as { fileDescriptorProtos?: unknown }).fileDescriptorProtos;
  return Array.isArray(list) ? (list as Uint8Array[]) : [];
}

function* typeReferences(file: FileDescriptor): Generator<string> {
  const stack = [...(file.messageType ?? [])];
  // Bounded by the descriptor's size: each nested message is visited once.
  while (stack.length > 0) {
    const m = stack.pop()!;
    for (const f of m.field ?? []) if (f.typeName) yield f.typeName;
    for (const e of m.extension ?? []) {
      if (e.typeName) yield e.typeName;
      if (e.extendee) yield e.extendee;
    }
    stack.push(...(m.nestedType ?? []));
  }
  for (const s of file.service ?? []) {
    for (const m of s.method ?? []) {
      if (m.inputType) yield m.inputType;
      if (m.outputType) yield m.outputType;
    }
  }
  for (const e of file.extension ?? []) {
    if (e.typeName) yield e.typeName;
    if (e.extendee) yield e.extendee;
  }
}

/** ".google.protobuf.Timestamp" -> the file of the longest package that prefixes it. */
function fileOfReference(ref: string, fileOfPackage: Map<string, string>): string | undefined {
  const name = ref.startsWith(".") ? ref.slice(1) : ref;
  let best: string | undefined;
  let bestLength = -1;
  for (const [pkg, file] of fileOfPackage) {
    if (pkg.length > bestLength && (pkg === "" || name.startsWith(pkg + "."))) {
      best = file;
      bestLength = pkg.length;
    }
  }
  return best;
}
