/** Layering of ../shared/DESIGN.md §1: dependencies point one way. */
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
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    exclude: { path: "^dist/" },
  },
};
