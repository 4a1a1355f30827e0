/**
 * Every top-level `lockbox` command: name -> module under ./commands/
 * exporting `command: CliCommand`, and the line `lockbox --help` shows. main.ts
 * dispatches from this table and the CLI tests enumerate it, so a command
 * added here is checked by them too.
 */
export interface CommandEntry {
  readonly module: string;
  readonly summary: string;
}

export const COMMANDS: Readonly<Record<string, CommandEntry>> = {
  init: { module: "init", summary: "create a cluster: CA, peer and admin identities, master key" },
  serve: { module: "serve", summary: "run a lockbox peer" },
  recover: {
    module: "recover",
    summary: "rebuild the master key from recovery shares and seal it to this TPM",
  },
  "master-key": {
    module: "master-key",
    summary: "rotate the cluster master key (new epoch, KEKs re-wrapped) and show its epochs",
  },
  identity: { module: "identity", summary: "issue, list and revoke client identities (cluster-wide)" },
  peer: { module: "peer", summary: "enroll, list, remove and drain the cluster's peers" },
  policy: { module: "policy", summary: "manage the PCR policies peers are attested against" },
  key: { module: "key", summary: "create, import, get, list, clone, rekey, grant and delete keys" },
  audit: { module: "audit", summary: "read a peer's audit log" },
  status: { module: "status", summary: "show what a peer is and how it holds the master key" },
  ring: { module: "ring", summary: "show the ring and the progress of its rebalance" },
  tpm: { module: "tpm", summary: "inspect a TPM: info, EK, quote, verify" },
  backup: { module: "backup", summary: "back up a stopped peer's store and config" },
  restore: { module: "restore", summary: "restore a peer's store from a backup" },
  join: { module: "join", summary: "join this machine to a cluster by TPM attestation" },
  "dev-cluster": {
    module: "dev-cluster",
    summary: "start, stop or show a local 3-peer attested development cluster",
  },
};
