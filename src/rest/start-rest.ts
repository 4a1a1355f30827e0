/**
 * Builds the peer's REST listener from its config's `rest` section (src/config/rest-config.ts):
 * the Keystone validator and/or the mTLS verifier, the order store, the Barbican API over the
 * peer's key service, all behind the shared call pipeline. startPeer (src/peer/start-peer.ts) calls
 * it with the parts it built; nothing here assembles a peer.
 */
import { readFile } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import type { Barrier } from "../crypto/barrier.js";
import type { PipelineContext } from "../edge/call-pipeline.js";
import type { InFlightLimit } from "../edge/in-flight.js";
import type { RestConfig } from "../config/rest-config.js";
import { ClientCertificateVerifier } from "../pki/client-certificate-verifier.js";
import type { PeerStore } from "../store/peer-store.js";
import type { Clock } from "../time/clock.js";
import { BarbicanApi, type BarbicanKeys } from "./barbican-api.js";
import { KEYSTONE_DEFAULTS, KeystoneValidator } from "./keystone-validator.js";
import { OrderStore } from "./order-store.js";
import { REST_LIMITS_DEFAULT, type RestLimits } from "../config/rest-limits.js";
import { type RunningRestServer, startRestServer } from "./rest-server.js";

export interface StartRestOptions {
  config: RestConfig;
  /** The config's directory (relative file names in `rest` are resolved against it). */
  dir: string;
  /** Overrides config.listen (tests: port 0). */
  listen?: string;
  tls: { caCertificatePem: string; certificatePem: string; privateKeyPem: string };
  keys: BarbicanKeys;
  store: PeerStore;
  barrier: Barrier;
  pipeline: PipelineContext;
  inFlight: InFlightLimit;
  clock: Clock;
  /** The config's `restLimits` tunables (defaults for what is left out). */
  limits?: Partial<RestLimits>;
}

export async function startRest(options: StartRestOptions): Promise<RunningRestServer> {
  const { config } = options;
  const limits: RestLimits = { ...REST_LIMITS_DEFAULT, ...options.limits };
  const resolvePath = (p: string): string => (isAbsolute(p) ? p : join(options.dir, p));
  let keystone: KeystoneValidator | undefined;
  if (config.keystone !== undefined) {
    const k = config.keystone;
    const password = (await readFile(resolvePath(k.servicePasswordFile), "utf8")).replace(/\r?\n$/, "");
    keystone = new KeystoneValidator(
      {
        ...KEYSTONE_DEFAULTS,
        url: k.url,
        serviceUser: k.serviceUser,
        servicePassword: password,
        serviceProject: k.serviceProject,
        serviceDomain: k.serviceDomain,
        serviceRoles: k.serviceRoles,
        cacheTtlMs: k.cacheSeconds * 1000,
        cacheEntriesMax: limits.keystoneCacheEntriesMax,
        negativeTtlMs: limits.keystoneNegativeCacheMs,
        validationsInFlightMax: limits.keystoneValidationsInFlightMax,
        requestTimeoutMs: limits.keystoneRequestTimeoutMs,
        ...(k.caCertificateFile !== undefined
          ? { caCertificatePem: await readFile(resolvePath(k.caCertificateFile), "utf8") }
          : {}),
      },
      options.clock,
    );
  }
  const auth = {
    clock: options.clock,
    ...(keystone !== undefined ? { keystone } : {}),
    ...(config.mtls ? { verifier: new ClientCertificateVerifier(options.tls.caCertificatePem) } : {}),
  };
  return startRestServer({
    listen: options.listen ?? config.listen,
    ...(config.plainHttp ? {} : { tls: options.tls }),
    ...(config.publicUrl !== undefined ? { publicUrl: config.publicUrl } : {}),
    api: new BarbicanApi(options.keys, new OrderStore(options.store, options.barrier), options.clock),
    auth,
    pipeline: options.pipeline,
    inFlight: options.inFlight,
    limits,
  });
}
