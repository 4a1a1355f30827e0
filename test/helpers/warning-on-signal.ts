/**
 * Loaded into a peer process by a test (`node --import`, through NODE_OPTIONS): on SIGUSR2 the
 * process emits one Node process warning, so the test can check where such warnings go (as JSON
 * log lines of component "node", not as Node's plain-text line on stderr).
 */
export const WARNING_CODE = "LOCKBOX_TEST_WARNING";

process.on("SIGUSR2", () =>
  process.emitWarning("a process warning the test asked for", { code: WARNING_CODE }),
);
