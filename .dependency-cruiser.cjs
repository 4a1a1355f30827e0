/** Layering (docs/architecture.md, "Layers"): dependencies point one way, outside src/ and inside it. */
module.exports = {
  forbidden: [
    {
      name: "cluster-not-to-src",
      comment: "cluster/ is pure cluster logic; it must not import the peer (src/).",
      severity: "error",
      from: { path: "^cluster/" },
      to: { path: "^src/" },
    },
    {
      name: "tpm-not-to-src",
      comment: "tpm/ speaks TPM 2.0 only; it must not import the peer (src/).",
      severity: "error",
      from: { path: "^tpm/" },
      to: { path: "^src/" },
    },
    {
      name: "cluster-not-to-tpm",
      comment: "cluster/ and tpm/ import nothing from each other.",
      severity: "error",
      from: { path: "^cluster/" },
      to: { path: "^tpm/" },
    },
    {
      name: "tpm-not-to-cluster",
      comment: "cluster/ and tpm/ import nothing from each other.",
      severity: "error",
      from: { path: "^tpm/" },
      to: { path: "^cluster/" },
    },
    {
      name: "raft-core-is-pure",
      comment: "The raft core does no IO: no Node built-ins, no npm packages (DESIGN.md §3).",
      severity: "error",
      from: { path: "^cluster/raft/core/" },
      to: {
        dependencyTypes: ["core", "npm", "npm-dev", "npm-optional", "npm-peer", "npm-no-pkg", "npm-unknown"],
      },
    },
    {
      name: "src-no-folder-cycles",
      comment:
        "src/ folders form a hierarchy: no folder may reach itself through another (a cycle means a concept is in the wrong folder).",
      severity: "error",
      scope: "folder",
      from: { path: "^src/" },
      to: { path: "^src/", circular: true },
    },
    {
      name: "src-seams-import-nothing",
      comment:
        "time/, identity/ and net/ are the seams every layer shares (Clock, Caller, HOST:PORT); they import nothing from src/ but errors.ts.",
      severity: "error",
      from: { path: "^src/(time|identity|net)/" },
      to: { path: "^src/", pathNot: ["^src/(time|identity|net)/", "^src/errors\\.ts$"] },
    },
    {
      name: "src-one-composition-root",
      comment:
        "Only the CLI starts peers: src/peer/ is the one composition root, and no part of a peer assembles one itself (tests may).",
      severity: "error",
      from: { path: "^src/", pathNot: ["^src/peer/", "^src/cli/"] },
      to: { path: "^src/peer/" },
    },
    {
      name: "src-cli-is-the-top",
      comment: "Nothing in src/ imports the command line.",
      severity: "error",
      from: { path: "^src/", pathNot: "^src/cli/" },
      to: { path: "^src/cli/" },
    },
    {
      name: "src-core-below-edges",
      comment:
        "The key service, its crypto, store and audit log know nothing of their edges (gRPC server, client library, CLI) or of the composition root.",
      severity: "error",
      from: { path: "^src/(keys|crypto|store|audit)/" },
      to: { path: "^src/(server|client|cli|peer|config)/" },
    },
    {
      name: "src-client-stands-alone",
      comment:
        "The client library runs on storage nodes: it must not pull in the peer's server, key service, crypto, store or audit log.",
      severity: "error",
      from: { path: "^src/client/" },
      to: { path: "^src/(server|keys|crypto|store|audit|peer|cli|config|pki|raft|control)/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    exclude: { path: "^dist/" },
  },
};
