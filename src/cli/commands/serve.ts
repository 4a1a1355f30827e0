/**
 * `lockbox serve`: runs the peer of an init directory until SIGTERM or
 * SIGINT, then stops taking calls, lets in-flight ones finish and closes the
 * store cleanly. When it is listening it prints exactly one line on stdout
 * (JSON with --json), so a supervisor or a test can wait for it.
 */
import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { MasterKeyError } from "../../crypto/master-key-error.js";
import { describeHostPort, isHostPort } from "../../net/host-port.js";
import { LOG_LEVELS, isLogLevel } from "../../logging/log-level.js";
import { startPeer } from "../../peer/start-peer.js";
import { dirFlag, UsageError, boolFlag, printJson, stringFlag } from "../client-options.js";
import { defineCommand, dirOption, type OptionDefinition } from "../cli-definition.js";
import { EXIT_FAILURE, EXIT_OK } from "../command.js";

const DESCRIPTION = [
  "Runs the lockbox peer created by `lockbox init --dir DIR` until SIGTERM or SIGINT.",
  "Prints one line when it listens:",
  '  --json: {"event":"ready","address":"127.0.0.1:7443","peerId":"peer-1","clusterId":"..."}',
  '         (and "restAddress":"HOST:PORT" when the config has a `rest` section: the Barbican v1 API)',
  "  else:   lockbox peer peer-1 listening on 127.0.0.1:7443 (cluster ...)",
  "Logs go to stderr, one JSON object per line (level, time, peer, component, msg); the level",
  "is the config's log.level, or $LOCKBOX_LOG_LEVEL (fatal, error, warn, info, debug, trace, silent).",
  "If the master key cannot be unsealed from this peer's TPM, it exits 1 and",
  "prints why, with a stable reason code (CMK_PCRS_CHANGED: the platform changed, attest again;",
  "CMK_SRK_MISMATCH: another or a cleared TPM, use `lockbox recover`; CMK_SEALED_FILE_*; CMK_TPM_FAILED):",
  '  --json: {"event":"unseal-failed","reason":"CMK_PCRS_CHANGED","message":"..."}',
].join("\n");

const OPTIONS: readonly OptionDefinition[] = [
  dirOption("the init directory"),
  {
    flags: "--listen <HOST:PORT>",
    description: "override the config's listen address; port 0 picks a free port",
  },
  {
    flags: "--metrics-listen <HOST:PORT>",
    description:
      "serve /metrics, /healthz and /readyz there (plain HTTP; keep it on loopback or a management network); " +
      'overrides the config\'s metrics.listen [$LOCKBOX_METRICS_LISTEN]; "" turns it off',
  },
  {
    flags: "--rest-listen <HOST:PORT>",
    description: "override the config's rest.listen (the Barbican v1 REST API, docs/openstack.md)",
  },
  {
    flags: "--manufacturer-ca <FILE>",
    description:
      "serve the attested join (`lockbox join`) over the control state, trusting EK certificates that chain " +
      "to this TPM manufacturer CA (PEM or DER; repeatable: root and intermediates). Without it this peer admits no joiner.",
    repeatable: true,
  },
  { flags: "--json", description: "print the ready line (and an unseal failure) as JSON" },
];

/** In-flight calls get this long to finish after a signal. */
const DRAIN_MS = 5_000;

export const command = defineCommand({
  name: "serve",
  summary: "run a lockbox peer",
  description: DESCRIPTION,
  options: OPTIONS,
  async run(args) {
    const dir = resolve(dirFlag(args));
    const listen = stringFlag(args, "listen");
    if (listen !== undefined && !isHostPort(listen, { portZero: true })) {
      throw new UsageError(
        `--listen must be ${describeHostPort({ portZero: true })}, got '${listen}'`,
        "--listen",
      );
    }
    const metricsListen = stringFlag(args, "metrics-listen") ?? process.env.LOCKBOX_METRICS_LISTEN;
    if (
      metricsListen !== undefined &&
      metricsListen !== "" &&
      !isHostPort(metricsListen, { portZero: true })
    ) {
      throw new UsageError(
        `--metrics-listen must be "" or ${describeHostPort({ portZero: true })}, got '${metricsListen}'`,
        "--metrics-listen",
      );
    }
    const logLevel = process.env.LOCKBOX_LOG_LEVEL;
    if (logLevel !== undefined && logLevel !== "" && !isLogLevel(logLevel)) {
      throw new UsageError(`LOCKBOX_LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got '${logLevel}'`);
    }
    const restListen = stringFlag(args, "rest-listen");
    if (restListen !== undefined && !isHostPort(restListen, { portZero: true })) {
      throw new UsageError(
        `--rest-listen must be ${describeHostPort({ portZero: true })}, got '${restListen}'`,
        "--rest-listen",
      );
    }
    const manufacturerCas = await readManufacturerCas(args.values["manufacturer-ca"]);
    const json = boolFlag(args, "json");
    // Overrides the config's attestation.intervalMs (tests fence within seconds, not tens of them).
    const intervalText = process.env.LOCKBOX_ATTESTATION_INTERVAL_MS;
    const attestationIntervalMs =
      intervalText === undefined || intervalText === "" ? undefined : Number(intervalText);
    if (
      attestationIntervalMs !== undefined &&
      !(Number.isSafeInteger(attestationIntervalMs) && attestationIntervalMs >= 100)
    ) {
      throw new UsageError(
        `LOCKBOX_ATTESTATION_INTERVAL_MS must be an integer >= 100, got '${intervalText}'`,
      );
    }

    let peer;
    try {
      peer = await startPeer({
        dir,
        routeProcessWarnings: true,
        ...(listen !== undefined ? { listen } : {}),
        ...(metricsListen !== undefined ? { metricsListen } : {}),
        ...(restListen !== undefined ? { restListen } : {}),
        ...(logLevel !== undefined && logLevel !== "" ? { logLevel } : {}),
        ...(attestationIntervalMs !== undefined ? { attestationIntervalMs } : {}),
        ...(manufacturerCas.length > 0 ? { joinWithControlState: { manufacturerCas } } : {}),
      });
    } catch (err) {
      if (!(err instanceof MasterKeyError)) throw err;
      if (json) printJson({ event: "unseal-failed", reason: err.reason, message: err.message });
      process.stderr.write(`lockbox serve: ${err.reason}: ${err.message}\n`);
      return EXIT_FAILURE;
    }
    const log = (line: string): void => peer.log(line);
    if (json) {
      printJson({
        event: "ready",
        address: peer.address,
        peerId: peer.peerId,
        clusterId: peer.clusterId,
        ...(peer.metricsAddress !== undefined ? { metricsAddress: peer.metricsAddress } : {}),
        ...(peer.restAddress !== undefined ? { restAddress: peer.restAddress } : {}),
      });
    } else {
      const rest = peer.restAddress !== undefined ? `, Barbican REST API on ${peer.restAddress}` : "";
      process.stdout.write(
        `lockbox peer ${peer.peerId} listening on ${peer.address}${rest} (cluster ${peer.clusterId})\n`,
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
  },
});

/** --manufacturer-ca files, each one certificate in PEM or DER; a file that is not one is a usage error. */
async function readManufacturerCas(value: unknown): Promise<X509Certificate[]> {
  const files = Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
  const cas: X509Certificate[] = [];
  for (const file of files) {
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (err) {
      throw new UsageError(`--manufacturer-ca ${file}: ${(err as Error).message}`, "--manufacturer-ca");
    }
    try {
      cas.push(new X509Certificate(bytes));
    } catch {
      throw new UsageError(`--manufacturer-ca ${file} is not an X.509 certificate`, "--manufacturer-ca");
    }
  }
  return cas;
}
