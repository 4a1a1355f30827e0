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
import type { Role } from "../../src/pki/caller.js";
import { type RunningPeer, startPeer } from "../../src/peer/start-peer.js";
import { serverProtos } from "../../src/server/proto-definitions.js";
import { AuditLog } from "../../src/audit/audit-log.js";
import { Barrier } from "../../src/crypto/barrier.js";
import { DevelopmentFileProtector } from "../../src/crypto/development-file-protector.js";
import { KeyService } from "../../src/keys/key-service.js";
import { type LockboxServerOptions, startLockboxServer } from "../../src/server/lockbox-server.js";
import { openPeerStore } from "../../src/store/peer-store.js";

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
 * A fixture peer whose edge runs over parts a test chose: the peer is started (for init's files and
 * store) and stopped, its store, key service and audit log are reopened, and `choose` may put its
 * own key service, audit sink or log between them and a new server. Everything closes when the test
 * ends. The returned fixture points at the new server.
 */
export async function startEdgeWith(
  t: ExecutionContext,
  choose: (real: {
    keys: KeyService;
    auditLog: AuditLog;
  }) => Partial<Pick<LockboxServerOptions, "keys" | "audit" | "log" | "limits">>,
): Promise<PeerFixture> {
  const base = await startTestPeer(t);
  await base.peer.close(500);
  const store = await openPeerStore(join(base.dir, "data"));
  const barrier = new Barrier();
  await barrier.unsealWith(new DevelopmentFileProtector(join(base.dir, "master-key.dev"), { log: () => {} }));
  const keys = await KeyService.open({ store, barrier, clusterSalt: new Uint8Array(32), partitionPower: 10 });
  const auditLog = await AuditLog.open(store);
  const read = (f: string): string => readFileSync(join(base.dir, f), "utf8");
  const server = await startLockboxServer(
    {
      tls: {
        caCertificatePem: read("ca.crt"),
        certificatePem: read("peer.crt"),
        privateKeyPem: read("peer.key"),
      },
      keys,
      admin: { status: () => Promise.reject(new Error("unused")), listAuditEvents: (r) => auditLog.list(r) },
      audit: auditLog,
      log: () => {},
      ...choose({ keys, auditLog }),
    },
    "127.0.0.1:0",
  );
  t.teardown(async () => {
    await server.close(500);
    await keys.close();
    await store.close();
  });
  return { ...base, peer: { ...base.peer, address: server.address, port: server.port } };
}

/** A peer shared by a file's tests: start in test.before, close in test.after.always. */
export async function startSharedPeer(): Promise<PeerFixture & { close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "lockbox-edge-"));
  const logs: string[] = [];
  try {
    await initCluster({ dir, peerId: "peer-1", listen: "127.0.0.1:0" });
    const peer = await startPeer({ dir, listen: "127.0.0.1:0", log: (l) => logs.push(l) });
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

/** Clients of both services presenting `identity` (or no client certificate at all). */
export function clientsFor(t: ExecutionContext, f: PeerFixture, identity: CertifiedKey | null): TestClients {
  const credentials =
    identity === null
      ? grpc.credentials.createSsl(Buffer.from(f.ca.certificatePem))
      : grpc.credentials.createSsl(
          Buffer.from(f.ca.certificatePem),
          Buffer.from(identity.privateKeyPem),
          Buffer.from(identity.certificatePem),
        );
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
