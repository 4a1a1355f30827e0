/**
 * A real peer for edge tests: `lockbox init`'s work in a temp dir, startPeer
 * on 127.0.0.1 port 0 (real gRPC, real LevelDB), and raw grpc-js clients
 * with whatever certificate a test wants to present.
 */
import * as grpc from "@grpc/grpc-js";
import type { ExecutionContext } from "ava";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initCluster } from "../../src/cli/commands/init.js";
import { type CertifiedKey, issueClientCertificate } from "../../src/pki/certificate-authority.js";
import type { Role } from "../../src/identity/caller.js";
import { type RunningPeer, type StartPeerOptions, startPeer } from "../../src/peer/start-peer.js";
import { serverProtos } from "../../src/server/proto-definitions.js";
import type { AuditLog } from "../../src/audit/audit-log.js";
import type { KeyService } from "../../src/keys/key-service.js";
import type { LockboxServerOptions } from "../../src/server/lockbox-server.js";
import type { EdgeLimits } from "../../src/server/edge-limits.js";

export interface PeerFixture {
  dir: string;
  peer: RunningPeer;
  ca: CertifiedKey;
  /** Server-side log lines (the edge's stderr). */
  logs: string[];
  admin: CertifiedKey;
}

/** A peer for one test, closed and removed when the test ends. */
export async function startTestPeer(t: ExecutionContext): Promise<PeerFixture> {
  const f = await startSharedPeer();
  t.teardown(() => f.close());
  return f;
}

/**
 * A fixture peer whose edge runs over parts a test chose: startPeer's `replaceParts` hands `choose`
 * the real key service and audit log, and the edge gets what it returns (its own key service, audit
 * sink or log) in their place. The peer is built by the composition root like any other; it closes
 * and its directory is removed when the test ends.
 */
export async function startEdgeWith(
  t: ExecutionContext,
  choose: (real: {
    keys: KeyService;
    auditLog: AuditLog;
  }) => Partial<Pick<LockboxServerOptions, "keys" | "audit" | "log" | "limits">>,
): Promise<PeerFixture> {
  const f = await startSharedPeer({ replaceParts: ({ keys, audit }) => choose({ keys, auditLog: audit }) });
  t.teardown(() => f.close());
  return f;
}

/** A peer shared by a file's tests: start in test.before, close in test.after.always. */
export async function startSharedPeer(
  options: Pick<StartPeerOptions, "replaceParts" | "metricsListen"> = {},
): Promise<PeerFixture & { close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "lockbox-edge-"));
  const logs: string[] = [];
  try {
    await initCluster({ dir, peerId: "peer-1", listen: "127.0.0.1:0" });
    const peer = await startPeer({ ...options, dir, listen: "127.0.0.1:0", log: (l) => logs.push(l) });
    const read = (f: string): string => readFileSync(join(dir, f), "utf8");
    return {
      dir,
      peer,
      logs,
      ca: { certificatePem: read("ca.crt"), privateKeyPem: read("ca.key") },
      admin: { certificatePem: read("admin.crt"), privateKeyPem: read("admin.key") },
      async close() {
        await peer.close(1_000);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

export function issue(
  f: PeerFixture,
  identity: string,
  role: Role,
  projects: string[],
  extra: { days?: number; notBefore?: Date } = {},
): Promise<CertifiedKey> {
  return issueClientCertificate(f.ca, { identity, role, projects, ...extra });
}

type Unary = (req: unknown, callback: (err: grpc.ServiceError | null, res?: any) => void) => void; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface TestClients {
  keys: Record<string, Unary>;
  admin: Record<string, Unary>;
  close(): void;
}

/** Channel credentials trusting the fixture's CA and presenting `identity` (or no client certificate). */
export function credentialsFor(f: PeerFixture, identity: CertifiedKey | null): grpc.ChannelCredentials {
  return identity === null
    ? grpc.credentials.createSsl(Buffer.from(f.ca.certificatePem))
    : grpc.credentials.createSsl(
        Buffer.from(f.ca.certificatePem),
        Buffer.from(identity.privateKeyPem),
        Buffer.from(identity.certificatePem),
      );
}

/**
 * `keys` with `method` running `before` first: a slow, counting or stalled key service for a test,
 * a wrapper of the real one (every other method is the real one's).
 */
export function withHook(
  keys: KeyService,
  method: keyof KeyService,
  before: () => Promise<void>,
): KeyService {
  return new Proxy(keys, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== "function") return value;
      const fn = value as (...a: unknown[]) => unknown;
      if (prop !== method) return fn.bind(target);
      return async (...args: unknown[]) => {
        await before();
        return fn.apply(target, args);
      };
    },
  });
}

/**
 * A fixture peer whose getKeyMetadata calls wait at a gate until `release()` (a wrapper of the real
 * key service); `entered()` counts the calls that reached it.
 */
export async function startGatedEdge(
  t: ExecutionContext,
  limits: Partial<EdgeLimits> = {},
): Promise<{ f: PeerFixture; entered(): number; release(): void }> {
  let entered = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const f = await startEdgeWith(t, (real) => ({
    keys: withHook(real.keys, "getKeyMetadata", async () => {
      entered += 1;
      await gate;
    }),
    limits,
  }));
  return { f, entered: () => entered, release };
}

/** Clients of both services presenting `identity` (or no client certificate at all). */
export function clientsFor(t: ExecutionContext, f: PeerFixture, identity: CertifiedKey | null): TestClients {
  const credentials = credentialsFor(f, identity);
  const protos = serverProtos();
  const KeyClient = grpc.makeGenericClientConstructor(protos.keyService, "KeyService");
  const AdminClient = grpc.makeGenericClientConstructor(protos.adminService, "AdminService");
  // The peer certificate names localhost and 127.0.0.1; TLS server names must be DNS names.
  const options = { "grpc.ssl_target_name_override": "localhost", "grpc.default_authority": "localhost" };
  const keys = new KeyClient(f.peer.address, credentials, options) as unknown as Record<string, Unary> &
    grpc.Client;
  const admin = new AdminClient(f.peer.address, credentials, options) as unknown as Record<string, Unary> &
    grpc.Client;
  const close = (): void => {
    keys.close();
    admin.close();
  };
  t.teardown(close);
  return { keys, admin, close };
}

/** Calls a unary method; resolves to the response or the ServiceError (never rejects). */
export function call<T = any>( // eslint-disable-line @typescript-eslint/no-explicit-any
  client: Record<string, Unary>,
  method: string,
  request: unknown,
): Promise<{ ok: true; value: T } | { ok: false; error: grpc.ServiceError }> {
  return new Promise((resolve) => {
    const fn = client[method];
    if (fn === undefined) throw new Error(`no method ${method}`);
    fn.call(client, request, (err, res) =>
      err ? resolve({ ok: false, error: err }) : resolve({ ok: true, value: res as T }),
    );
  });
}

/** The status of a call that must fail. */
export async function failure(
  t: ExecutionContext,
  p: Promise<{ ok: true; value: unknown } | { ok: false; error: grpc.ServiceError }>,
): Promise<grpc.ServiceError> {
  const r = await p;
  if (r.ok) {
    t.fail(`expected the call to fail, got ${JSON.stringify(r.value).slice(0, 200)}`);
    throw new Error("unreachable");
  }
  return r.error;
}
