// Generates TypeScript types for proto/lockbox/v1/*.proto into src/gen/ (not committed).
// proto-loader-gen-types ships with @grpc/proto-loader, so there is no protoc to install.
import { execFileSync } from "node:child_process";
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const protoDir = join(root, "proto");
const files = readdirSync(join(protoDir, "lockbox/v1"))
  .filter((f) => f.endsWith(".proto"))
  .map((f) => `lockbox/v1/${f}`);
rmSync(join(root, "src/gen"), { recursive: true, force: true });
execFileSync(
  join(root, "node_modules/.bin/proto-loader-gen-types"),
  [
    "--keepCase",
    "--longs=String",
    "--enums=String",
    "--defaults",
    "--oneofs",
    "--grpcLib=@grpc/grpc-js",
    "--importFileExtension=.js",
    "--includeDirs",
    protoDir,
    "--outDir",
    join(root, "src/gen"),
    ...files,
  ],
  { stdio: "inherit", cwd: protoDir },
);
