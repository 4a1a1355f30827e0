/**
 * grpc-js writes its own log lines ("E No address added out of total 1 resolved") to stderr through
 * console.error, bypassing the peer's logger and landing in the CLI's output. Routed here, they
 * become events of component "grpc" at the matching level, so they are JSON like every other line
 * of a peer, and a CLI command shows them only when LOCKBOX_LOG_LEVEL asks. GRPC_VERBOSITY and
 * GRPC_TRACE still choose what grpc-js produces.
 */
import type * as grpc from "@grpc/grpc-js";
import { format } from "node:util";
import type { Logger } from "./logger.js";

/** `grpcModule` is grpc-js itself (passed in, so that this module does not load it). */
export function routeGrpcLogs(grpcModule: Pick<typeof grpc, "setLogger">, logger: Logger): void {
  const child = logger.child({ component: "grpc" });
  grpcModule.setLogger({
    error: (...args: unknown[]) => child.error(format(...args)),
    info: (...args: unknown[]) => child.info(format(...args)),
    debug: (...args: unknown[]) => child.debug(format(...args)),
  } as Partial<Console>);
}
