import test from "ava";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isLockboxError } from "../../src/errors.js";
import {
  type CertifiedKey,
  createClusterCa,
  issueClientCertificate,
  issuePeerCertificate,
} from "../../src/pki/certificate-authority.js";
import { ClientCertificateVerifier } from "../../src/pki/client-certificate-verifier.js";
import { writePrivateKeyFile } from "../../src/pki/pem-files.js";
import { x509 } from "../../src/pki/x509.js";

const DAY_MS = 24 * 3600 * 1000;
const der = (c: CertifiedKey): Uint8Array =>
  new Uint8Array(new x509.X509Certificate(c.certificatePem).rawData);

let ca: CertifiedKey;
let otherCa: CertifiedKey;
test.before(async () => {
  ca = await createClusterCa({ clusterId: "11111111-1111-4111-8111-111111111111" });
  otherCa = await createClusterCa({ clusterId: "22222222-2222-4222-8222-222222222222" });
});

function unauthenticatedMessage(t: import("ava").ExecutionContext, fn: () => unknown): string {
  const err = t.throws(fn);
  t.true(isLockboxError(err, "UNAUTHENTICATED"), `expected UNAUTHENTICATED, got ${String(err)}`);
  return (err as Error).message;
}

test("a client certificate reads back as its identity, role and projects", async (t) => {
  const cert = await issueClientCertificate(ca, {
    identity: "vol-host-1",
    role: "service",
    projects: ["p1", "p2"],
  });
  const caller = new ClientCertificateVerifier(ca.certificatePem).verify(der(cert));
  t.deepEqual(caller, { identity: "vol-host-1", role: "service", projects: ["p1", "p2"] });
});

test("an admin certificate without projects reads back as admin", async (t) => {
  const cert = await issueClientCertificate(ca, { identity: "admin", role: "admin", projects: [] });
  t.deepEqual(new ClientCertificateVerifier(ca.certificatePem).verify(der(cert)), {
    identity: "admin",
    role: "admin",
    projects: [],
  });
});

test("a certificate of another CA is UNAUTHENTICATED", async (t) => {
  const cert = await issueClientCertificate(otherCa, { identity: "intruder", role: "admin", projects: [] });
  const message = unauthenticatedMessage(t, () =>
    new ClientCertificateVerifier(ca.certificatePem).verify(der(cert)),
  );
  t.regex(message, /not signed by the cluster CA/);
});

test("an expired or not yet valid certificate is UNAUTHENTICATED", async (t) => {
  const now = new Date();
  const cert = await issueClientCertificate(ca, {
    identity: "old",
    role: "service",
    projects: ["p1"],
    days: 1,
    notBefore: new Date(now.getTime() - 10 * DAY_MS),
  });
  const verifier = new ClientCertificateVerifier(ca.certificatePem);
  t.regex(
    unauthenticatedMessage(t, () => verifier.verify(der(cert), now)),
    /expired/,
  );
  t.regex(
    unauthenticatedMessage(t, () => verifier.verify(der(cert), new Date(now.getTime() - 20 * DAY_MS))),
    /not valid yet/,
  );
  // The same certificate is accepted inside its dates: the dates, not the certificate, were at fault.
  t.is(verifier.verify(der(cert), new Date(now.getTime() - 9.5 * DAY_MS)).identity, "old");
});

test("a peer (server) certificate is not a client identity: no role", async (t) => {
  const peer = await issuePeerCertificate(ca, { peerId: "peer-1" });
  const message = unauthenticatedMessage(t, () =>
    new ClientCertificateVerifier(ca.certificatePem).verify(der(peer)),
  );
  t.regex(message, /role/);
});

test("the CA certificate itself is refused as a client certificate", (t) => {
  const message = unauthenticatedMessage(t, () =>
    new ClientCertificateVerifier(ca.certificatePem).verify(der(ca)),
  );
  t.regex(message, /CA certificate|clientAuth/);
});

test("missing or garbage certificate bytes are UNAUTHENTICATED, never a crash", (t) => {
  const verifier = new ClientCertificateVerifier(ca.certificatePem);
  unauthenticatedMessage(t, () => verifier.verify(undefined));
  unauthenticatedMessage(t, () => verifier.verify(new Uint8Array(0)));
  unauthenticatedMessage(t, () => verifier.verify(new Uint8Array([0x30, 0x82, 0x01, 0x00, 1, 2, 3])));
  const cert = der(ca);
  const truncated = cert.slice(0, cert.length - 10);
  unauthenticatedMessage(t, () => verifier.verify(truncated));
});

test("invalid identity or project names are refused with INVALID_ARGUMENT naming the field", async (t) => {
  for (const [identity, projects, field] of [
    ["has space", ["p1"], "identity"],
    ["", ["p1"], "identity"],
    ["-dash-first", ["p1"], "identity"],
    ["ok", ["p/1"], "project"],
    ["ok", ["x".repeat(129)], "project"],
  ] as const) {
    const err = await t.throwsAsync(
      issueClientCertificate(ca, { identity, role: "service", projects: [...projects] }),
    );
    t.true(isLockboxError(err, "INVALID_ARGUMENT"));
    t.is((err as { field?: string }).field, field);
  }
});

test("openssl independently accepts the chain and the purposes", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "lockbox-pki-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const client = await issueClientCertificate(ca, { identity: "svc", role: "service", projects: ["p1"] });
  const peer = await issuePeerCertificate(ca, {
    peerId: "peer-1",
    hostNames: ["lockbox.example", "10.0.0.7"],
  });
  writeFileSync(join(dir, "ca.crt"), ca.certificatePem);
  writeFileSync(join(dir, "client.crt"), client.certificatePem);
  writeFileSync(join(dir, "peer.crt"), peer.certificatePem);
  const verify = (purpose: string, file: string): string =>
    execFileSync(
      "openssl",
      ["verify", "-CAfile", join(dir, "ca.crt"), "-purpose", purpose, join(dir, file)],
      {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
  t.regex(verify("sslclient", "client.crt"), /OK/);
  t.regex(verify("sslserver", "peer.crt"), /OK/);
  t.throws(() => verify("sslserver", "client.crt"), undefined, "a client certificate must not serve TLS");
  const text = execFileSync(
    "openssl",
    ["x509", "-noout", "-ext", "subjectAltName", "-in", join(dir, "peer.crt")],
    {
      encoding: "utf8",
    },
  );
  for (const name of [
    "IP Address:127.0.0.1",
    "DNS:localhost",
    "DNS:lockbox.example",
    "IP Address:10.0.0.7",
  ]) {
    t.true(text.includes(name), `peer SAN lacks ${name}: ${text}`);
  }
});

test("private key files are created 0600 and never overwritten", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "lockbox-pki-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "k.key");
  await writePrivateKeyFile(path, ca.privateKeyPem);
  t.is(statSync(path).mode & 0o777, 0o600);
  const err = await t.throwsAsync(writePrivateKeyFile(path, "other"));
  t.is((err as NodeJS.ErrnoException).code, "EEXIST");
});
