/**
 * Node's own process warnings (deprecations, MaxListenersExceeded, ...) are written by Node to
 * stderr as plain text, between the peer's JSON lines. Routed here, each becomes one event of
 * component "node" at level warn, so every line a peer writes is JSON. Only a process of its own
 * (`lockbox serve`) routes them: the listener is process-wide.
 *
 * DEP0123 is dropped, as the CLI drops it (client-options.ts): grpc-js sends an IP literal as TLS
 * server name when a peer dials another by address; the certificate check is unaffected.
 */
import type { Logger } from "./logger.js";

export function routeProcessWarnings(logger: Logger): void {
  const child = logger.child({ component: "node" });
  // Node's default listener is what prints the plain-text line; this one replaces it.
  process.removeAllListeners("warning");
  process.on("warning", (w: Error & { code?: string }) => {
    if (w.code === "DEP0123") return;
    child.warn({ warning: w.name, ...(w.code !== undefined ? { code: w.code } : {}) }, w.message);
  });
}
