/**
 * EK certificates as swtpm_setup writes them to NV, signed by a project-local
 * CA: read through our client, matched against the EK, chain-verified.
 */
import test from "ava";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Tpm } from "../../tpm/client/tpm.js";
import { EkCertificateError } from "../../tpm/ek/ek-certificate-error.js";
import {
  checkEkCertificateKey,
  parseCertificates,
  verifyEkCertificateChain,
} from "../../tpm/ek/ek-certificate.js";
import { readAndVerifyEk, readEk } from "../../tpm/ek/read-ek.js";
import type { ProvisionedSwtpm } from "../../tpm/swtpm/index.js";
import { newCaDir, startProvisionedSwtpm } from "./swtpm-fixture.js";

async function caCerts(p: ProvisionedSwtpm) {
  return [
    ...parseCertificates(await fs.readFile(p.caCertPaths.root, "utf8")),
    ...parseCertificates(await fs.readFile(p.caCertPaths.intermediate, "utf8")),
  ];
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof EkCertificateError ? err.code : `not an EkCertificateError: ${String(err)}`;
  }
}

test("the EK certificate in NV verifies against its local CA, and fails against a second local CA", async (t) => {
  const [a, b] = await Promise.all([
    startProvisionedSwtpm(t),
    newCaDir(t).then((caDir) => startProvisionedSwtpm(t, { caDir })),
  ]);
  const tpmA = new Tpm(await a.connect());
  const ownCa = await caCerts(a.provisioned);
  const otherCa = await caCerts(b.provisioned);

  const ek = await readAndVerifyEk(tpmA, ownCa);
  t.is(ek.chain.length, 3, "EK certificate, intermediate, root");
  t.deepEqual(
    Buffer.from(ek.certificateDer),
    await fs.readFile(a.provisioned.ekCertPaths.rsa),
    "NV holds what swtpm_setup wrote",
  );
  t.is(ek.ekName.length, 34);

  // Both local CAs carry the same names; only the signatures tell them apart.
  t.is(otherCa[0]!.subject, ownCa[0]!.subject);
  const err = await t.throwsAsync(readAndVerifyEk(tpmA, otherCa), { instanceOf: EkCertificateError });
  t.is(err?.code, "bad-signature");

  // B's certificate does not certify A's EK.
  const certB = parseCertificates(await fs.readFile(b.provisioned.ekCertPaths.rsa))[0]!;
  t.is(
    code(() => checkEkCertificateKey(certB, ek.ekPublic)),
    "public-key-mismatch",
  );
  t.is(
    code(() => verifyEkCertificateChain(certB, otherCa)),
    undefined,
    "B's certificate is fine against B's CA",
  );
});

test("chain checks name what is wrong: missing root, missing intermediate, dates, malformed input", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  const tpm = new Tpm(await f.connect());
  const { certificate } = await readEk(tpm);
  const [root, intermediate] = await caCerts(f.provisioned);
  t.is(
    code(() => verifyEkCertificateChain(certificate, [intermediate!])),
    "no-trust-anchor",
  );
  t.is(
    code(() => verifyEkCertificateChain(certificate, [root!])),
    "no-issuer",
  );
  t.is(
    code(() =>
      verifyEkCertificateChain(certificate, [root!, intermediate!], { now: new Date("2001-01-01") }),
    ),
    "not-yet-valid",
  );
  t.is(
    code(() => verifyEkCertificateChain(certificate, [root!, intermediate!], { intermediatesMax: 0 })),
    "chain-too-long",
  );
  t.is(
    code(() => verifyEkCertificateChain(certificate, [root!, intermediate!])),
    undefined,
  );
  t.is(
    code(() => parseCertificates(randomBytes(200))),
    "malformed-certificate",
  );
  t.is(
    code(() => parseCertificates("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----")),
    "malformed-certificate",
  );
});

/** Runs openssl (installed with the TPM tools) to make test certificates; bounded by a timeout. */
function openssl(cwd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile("openssl", args, { cwd, timeout: 20_000 }, (err, _out, stderr) =>
      err === null ? resolve() : reject(new Error(`openssl ${args[0]}: ${stderr}`)),
    );
  });
}

test("a chain through a certificate that is not a CA is refused with issuer-not-ca; an expired chain with expired", async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "lockbox-ek-ca-"));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await openssl(dir, [
    "req",
    "-x509",
    ...key,
    "-keyout",
    "root.key",
    "-out",
    "root.pem",
    "-subj",
    "/CN=test-root",
    "-days",
    "30",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
  ]);
  // An end-entity certificate (CA:FALSE) that is then misused to sign an "EK certificate".
  await openssl(dir, ["req", ...key, "-keyout", "mid.key", "-out", "mid.csr", "-subj", "/CN=not-a-ca"]);
  await fs.writeFile(path.join(dir, "ee.ext"), "basicConstraints=critical,CA:FALSE\n");
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    "mid.csr",
    "-CA",
    "root.pem",
    "-CAkey",
    "root.key",
    "-CAcreateserial",
    "-days",
    "30",
    "-extfile",
    "ee.ext",
    "-out",
    "mid.pem",
  ]);
  await openssl(dir, ["req", ...key, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=leaf"]);
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    "leaf.csr",
    "-CA",
    "mid.pem",
    "-CAkey",
    "mid.key",
    "-CAcreateserial",
    "-days",
    "30",
    "-extfile",
    "ee.ext",
    "-out",
    "leaf.pem",
  ]);
  const read = async (f: string) => parseCertificates(await fs.readFile(path.join(dir, f), "utf8"))[0]!;
  const [root, mid, leaf] = await Promise.all([read("root.pem"), read("mid.pem"), read("leaf.pem")]);
  t.is(
    code(() => verifyEkCertificateChain(leaf, [root, mid])),
    "issuer-not-ca",
  );
  t.is(
    code(() => verifyEkCertificateChain(mid, [root])),
    undefined,
    "the root itself is fine",
  );
  t.is(
    code(() => verifyEkCertificateChain(mid, [root], { now: new Date(Date.now() + 365 * 86_400_000) })),
    "expired",
  );
});
