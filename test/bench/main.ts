/**
 * `npm run bench -- <name>`: runs one benchmark script, test/bench/<name>.ts,
 * which prints human-readable figures and ends with one JSON line of them.
 */
const BENCHES: Record<string, { about: string; flags: string }> = {
  single: {
    about: "single-peer key service: CreateKey, GetKey and DeleteKey at concurrency 1 and 64",
    flags: "[--ops N (3000)] [--seconds N (10)]  per case, whichever ends first",
  },
  cluster: {
    about:
      "3 peer processes, keys on N = 3 with W = R = 2: CreateKey and GetKey (client cache off) at concurrency 1 and 64",
    flags:
      "[--ops N (3000)] [--seconds N (10)]  per case, whichever ends first; [--warmup N (10)] seconds of load before each; [--cases CreateKey:64,...] (only those); [--cpu-prof DIR] (each peer's CPU profile); [--metrics] (peers serve /metrics; each case prints their synced batches per call)",
  },
  tpm: {
    about: "TPM: quote, verifyQuote, seal, unseal on swtpm",
    flags: "[--count N (200)] [--duration-ms N (10000)]",
  },
  startup: {
    about: "peer startup: spawn to ready of lockbox serve, empty and with keys, beside `node -e ''`",
    flags: "[--runs N (9)] [--keys N (3000)] [--baseline DIR (another built checkout, timed alongside)]",
  },
  barbican: {
    about:
      "Barbican v1 REST API with a real Keystone: store and payload read at concurrency 1 and 16, Castellan get (requests per get), beside Barbican 15's figures",
    flags:
      "[--ops N (2000)] [--seconds N (10)] [--castellan-gets N (50)] [--tls (HTTPS; default plain HTTP on loopback)]",
  },
  "audit-flood": {
    about:
      "a legitimate client's CreateKey p50/p99 before and during an unauthenticated flood from another process (goal: p99 within 3x)",
    flags: "[--seconds N (30)] [--baseline-seconds N (6)]",
  },
  raft: {
    about: "raft: proposals per second and commit latency, 3 processes on loopback",
    flags: "[--concurrency 1,8,64] [--duration-ms N (3000)] [--count-max N (20000)]",
  },
};

const name = process.argv[2];
const usage = (names: string[]): string =>
  names.map((n) => `  npm run bench -- ${n} ${BENCHES[n]!.flags}\n      ${BENCHES[n]!.about}`).join("\n") +
  "\n";
if (name === undefined || name === "--help" || name === "-h" || !(name in BENCHES)) {
  const help = name === "--help" || name === "-h";
  (help ? process.stdout : process.stderr).write(`usage:\n${usage(Object.keys(BENCHES))}`);
  process.exit(help ? 0 : 2);
}
if (process.argv.includes("--help") || process.argv.includes("-h")) {
  process.stdout.write(`usage:\n${usage([name])}Ends with one JSON line of the figures.\n`);
  process.exit(0);
}
const mod = (await import(`./${name}.js`)) as { main(argv: string[]): Promise<void> };
await mod.main(process.argv.slice(3));
