/**
 * `npm run bench -- <name>`: runs one benchmark script, test/bench/<name>.ts,
 * which prints human-readable figures and ends with one JSON line of them.
 */
const BENCHES: Record<string, string> = {
  single: "single-peer key service: CreateKey / GetKey at concurrency 1 and 64",
  tpm: "TPM: quote, verifyQuote, seal, unseal on swtpm",
  startup: "peer startup: spawn to ready of lockbox serve, empty and with keys, beside `node -e ''`",
  raft: "raft: proposals per second and commit latency, 3 processes on loopback",
};

const name = process.argv[2];
if (name === undefined || !(name in BENCHES)) {
  process.stderr.write(
    `usage: npm run bench -- <name>\n\n${Object.entries(BENCHES)
      .map(([n, d]) => `  ${n.padEnd(8)} ${d}`)
      .join("\n")}\n`,
  );
  process.exit(2);
}
const mod = (await import(`./${name}.js`)) as { main(argv: string[]): Promise<void> };
await mod.main(process.argv.slice(3));
