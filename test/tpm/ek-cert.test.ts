/**
 * EK certificates as swtpm_setup writes them to NV, signed by a project-local
 * CA: read through our client, matched against the EK, chain-verified.
 */
import test from "ava";
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
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
