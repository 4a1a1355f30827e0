/**
 * `lockbox serve`: runs the peer of an init directory until SIGTERM or
 * SIGINT, then stops taking calls, lets in-flight ones finish and closes the
 * store cleanly. When it is listening it prints exactly one line on stdout
 * (JSON with --json), so a supervisor or a test can wait for it.
 */
import { resolve } from "node:path";
import { MasterKeyError } from "../../crypto/master-key-error.js";
import { describeHostPort, isHostPort } from "../../net/host-port.js";
import { startPeer } from "../../peer/start-peer.js";
import {
  UsageError,
  boolFlag,
  parseCommandArgs,
  printJson,
  requiredFlag,
  runGuarded,
  stringFlag,
} from "../client-options.js";
import type { CliCommand } from "../command.js";
import { EXIT_FAILURE, EXIT_OK } from "../command.js";

const USAGE = [
  "usage: lockbox serve --dir DIR [--listen HOST:PORT] [--json]",
  "",
  "Runs the lockbox peer created by `lockbox init --dir DIR` until SIGTERM or SIGINT.",
  "Prints one line when it listens:",
  '  --json: {"event":"ready","address":"127.0.0.1:7443","peerId":"peer-1","clusterId":"..."}',
  "  else:   lockbox peer peer-1 listening on 127.0.0.1:7443 (cluster ...)",
  "Logs go to stderr. If the master key cannot be unsealed from this peer's TPM, it exits 1 and",
  "prints why, with a stable reason code (CMK_PCRS_CHANGED: the platform changed, attest again;",
  "CMK_SRK_MISMATCH: another or a cleared TPM, use `lockbox recover`; CMK_SEALED_FILE_*; CMK_TPM_FAILED):",
  '  --json: {"event":"unseal-failed","reason":"CMK_PCRS_CHANGED","message":"..."}',
  "",
  "options:",
  "  --dir DIR            the init directory (required)",
  "  --listen HOST:PORT   override the config's listen address; port 0 picks a free port",
  "  --json               print the ready line as JSON",
  "  -h, --help           show this help",
].join("\n");

/** In-flight calls get this long to finish after a signal. */
const DRAIN_MS = 5_000;

export const command: CliCommand = {
  name: "serve",
  summary: "run a lockbox peer",
  run(argv) {
    return runGuarded("lockbox serve", USAGE, async () => {
      const args = parseCommandArgs(
        argv,
        {
          dir: { type: "string" },
          listen: { type: "string" },
          json: { type: "boolean" },
          help: { type: "boolean", short: "h" },
        },
        0,
      );
      if (boolFlag(args, "help")) {
        process.stdout.write(USAGE + "\n");
        return EXIT_OK;
      }
      const dir = resolve(requiredFlag(args, "dir"));
      const listen = stringFlag(args, "listen");
      if (listen !== undefined && !isHostPort(listen, { portZero: true })) {
        throw new UsageError(
          `--listen must be ${describeHostPort({ portZero: true })}, got '${listen}'`,
          "--listen",
        );
      }
      const json = boolFlag(args, "json");
      const log = (line: string): void => {
        process.stderr.write(line + "\n");
      };

      let peer;
      try {
        peer = await startPeer({ dir, ...(listen !== undefined ? { listen } : {}), log });
      } catch (err) {
        if (!(err instanceof MasterKeyError)) throw err;
        if (json) printJson({ event: "unseal-failed", reason: err.reason, message: err.message });
        process.stderr.write(`lockbox serve: ${err.reason}: ${err.message}\n`);
        return EXIT_FAILURE;
      }
      if (json) {
        printJson({ event: "ready", address: peer.address, peerId: peer.peerId, clusterId: peer.clusterId });
      } else {
        process.stdout.write(
          `lockbox peer ${peer.peerId} listening on ${peer.address} (cluster ${peer.clusterId})\n`,
        );
      }

      const signal = await new Promise<NodeJS.Signals>((done) => {
        const onSignal = (s: NodeJS.Signals): void => {
          process.off("SIGTERM", onSignal);
          process.off("SIGINT", onSignal);
          // A second signal while draining means "now".
          const force = (): void => process.exit(EXIT_FAILURE);
          process.once("SIGTERM", force);
          process.once("SIGINT", force);
          done(s);
        };
        process.on("SIGTERM", onSignal);
        process.on("SIGINT", onSignal);
      });
      log(`lockbox: ${signal}: draining calls and closing the store`);
      await peer.close(DRAIN_MS);
      log("lockbox: stopped");
      return EXIT_OK;
    });
  },
};
