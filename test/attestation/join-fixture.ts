/**
 * Test fixture for the attested join: a "cluster" side (its CA, a real
 * AuditLog on a LevelDB store, an InMemoryJoinAuthority, a JoinVerifier
 * trusting the swtpm local CA as the manufacturer CA) and "machines", each a
 * real swtpm with its own EK. A channel between them records every answer
 * the verifier gave, so a test can prove no CMK byte ever reached a joiner.
 */
import type { ExecutionContext } from "ava";
import { X509Certificate, generateKeyPairSync } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tpm } from "../../tpm/client/tpm.js";
import { readEk } from "../../tpm/ek/read-ek.js";
import { publicKeyFromTpmt } from "../../tpm/keys/public-key.js";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { TpmlPcrSelection } from "../../tpm/spec/pcr.js";
import type { PcrValue } from "../../tpm/verify/pcr-values.js";
import { quotePolicyForValues } from "../../tpm/verify/quote-policy.js";
import { localCaCertPaths } from "../../tpm/swtpm/index.js";
import { AuditLog, type AuditEvent } from "../../src/audit/audit-log.js";
import { InMemoryJoinAuthority } from "../../src/attestation/in-memory-join-authority.js";
import type { JoinChannel } from "../../src/attestation/joiner.js";
import type { JoinResult } from "../../src/attestation/join-messages.js";
import { JoinVerifier } from "../../src/attestation/join-verifier.js";
import type { JoinSessionLimits } from "../../src/attestation/join-sessions.js";
import { type CertifiedKey, createClusterCa } from "../../src/pki/certificate-authority.js";
import { openPeerStore } from "../../src/store/peer-store.js";
import {
  type SwtpmFixture,
  type SwtpmFixtureOptions,
  sharedLocalCaDir,
  startProvisionedSwtpm,
} from "../tpm/swtpm-fixture.js";

export const POLICY_PCRS = [0, 1, 2, 3, 7];
export const POLICY_NAME = "default";

export class ManualClock {
  ms = Date.now();
  now(): Date {
    return new Date(this.ms);
  }
  advance(ms: number): void {
    this.ms += ms;
  }
}

export interface Machine {
  readonly fixture: SwtpmFixture;
  readonly tpm: Tpm;
  readonly ekSpki: Uint8Array;
  readonly ekCertificateDer: Uint8Array;
  /** Current values of POLICY_PCRS (sha256). */
  pcrValues(): Promise<PcrValue[]>;
}

export async function machine(t: ExecutionContext, options: SwtpmFixtureOptions = {}): Promise<Machine> {
  const fixture = await startProvisionedSwtpm(t, options);
  const tpm = new Tpm(await fixture.connect());
  const ek = await readEk(tpm);
  return {
    fixture,
    tpm,
    ekSpki: publicKeyFromTpmt(ek.ekPublic).export({ type: "spki", format: "der" }),
    ekCertificateDer: ek.certificateDer,
    async pcrValues() {
      const read = await tpm.pcrRead(TpmlPcrSelection.of(TPM_ALG_ID.SHA256, POLICY_PCRS));
      return read.values.map((v) => ({ hashAlg: v.hash, pcr: v.pcr, value: v.digest }));
    },
  };
}

export interface Cluster {
  readonly authority: InMemoryJoinAuthority;
  readonly verifier: JoinVerifier;
  readonly audit: AuditLog;
  readonly clock: ManualClock;
  readonly caCertificatePem: string;
  readonly ca: CertifiedKey;
  /** Every answer the verifier gave through any channel(), as JSON text. */
  readonly answers: string[];
  /** Enrolls `m` as `peerId` with a policy approving its PCR values now. */
  enroll(
    m: Machine,
    peerId: string,
    extra?: { joinTokenHash?: Uint8Array; joinTokenExpiresAtMs?: number },
  ): Promise<void>;
  channel(source?: string): JoinChannel;
  /** The audit log's Join records, oldest first. */
  joinEvents(): Promise<AuditEvent[]>;
  /** Whether any answer so far carried the CMK's bytes (hex or base64). */
  cmkSent(): boolean;
}

export async function cluster(
  t: ExecutionContext,
  limits: Partial<JoinSessionLimits> = {},
): Promise<Cluster> {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-join-"));
  const store = await openPeerStore(dir);
  const clock = new ManualClock();
  const audit = await AuditLog.open(store, clock, { log: () => {} });
  t.teardown(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  const ca = await createClusterCa({ clusterId: "test" });
  const authority = new InMemoryJoinAuthority(ca);
  const caPaths = localCaCertPaths(sharedLocalCaDir());
  const manufacturerCas = [
    new X509Certificate(await readFile(caPaths.root)),
    new X509Certificate(await readFile(caPaths.intermediate)),
  ];
  const verifier = new JoinVerifier({ authority, manufacturerCas, audit, clock, limits, log: () => {} });
  const answers: string[] = [];
  const record = async <T>(p: Promise<JoinResult<T>>): Promise<JoinResult<T>> => {
    const r = await p;
    answers.push(
      JSON.stringify(r, (_k, v: unknown) =>
        v instanceof Uint8Array ? Buffer.from(v).toString("hex") : typeof v === "bigint" ? v.toString() : v,
      ),
    );
    return r;
  };
  return {
    authority,
    verifier,
    audit,
    clock,
    caCertificatePem: ca.certificatePem,
    ca,
    answers,
    async enroll(m, peerId, extra = {}) {
      authority.setPolicy(
        POLICY_NAME,
        quotePolicyForValues(await m.pcrValues(), {
          hashAlg: "sha256",
          signatureScheme: "ecdsa",
          firmwareVersionMin: "00000000.00000000",
        }),
      );
      authority.enroll({
        peerId,
        state: "enrolled",
        ekPublicKeySpki: m.ekSpki,
        policyName: POLICY_NAME,
        ...extra,
      });
    },
    channel(source = "127.0.0.1") {
      return {
        begin: (hello) => record(verifier.begin(hello, source)),
        activate: (a) => record(verifier.activate(a, source)),
        attest: (q) => record(verifier.attest(q, source)),
        confirm: (c) => record(verifier.confirm(c, source)),
      };
    },
    async joinEvents() {
      return (await audit.list({ pageSize: 1000 })).events.filter((e) => e.operation === "Join");
    },
    cmkSent() {
      const key = Buffer.from(authority.cmkForTest().key);
      const text = answers.join("\n");
      return text.includes(key.toString("hex")) || text.includes(key.toString("base64"));
    },
  };
}

/** A fresh P-256 TLS key pair for the joiner; the SPKI is what gets certified. */
export function tlsKey(): { spki: Uint8Array; privateKeyPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  return {
    spki: publicKey.export({ type: "spki", format: "der" }),
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  };
}
