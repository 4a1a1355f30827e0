/**
 * The join messages (join-messages.ts) as lockbox.v1.JoinService carries
 * them (proto/lockbox/v1/join.proto), both ways. Decoding is where hostile
 * bytes enter: every field is checked for type and bound here, and anything
 * else is refused as "message-malformed" naming the field, never thrown.
 */
import type { QuoteFailure } from "../../tpm/verify/quote-failure.js";
import type { PcrValue } from "../../tpm/verify/pcr-values.js";
import type { PeerSetup } from "./join-authority.js";
import type {
  JoinActivation,
  JoinAdmitted,
  JoinChallenge,
  JoinConfirm,
  JoinConfirmed,
  JoinHello,
  JoinNonce,
  JoinQuote,
  JoinResult,
} from "./join-messages.js";
import { type JoinRefusal, isJoinCheck, isJoinRefusalCode, joinRefusal } from "./join-refusal.js";

/** More PCR readings than any policy can name (8 banks x 24 PCRs). */
const PCR_READINGS_MAX = 8 * 24;
const PEER_ID_CHARS_MAX = 64;
const DETAILS_JSON_CHARS_MAX = 64 * 1024;

export type WireObject = Record<string, unknown>;

export class WireError extends Error {
  override readonly name = "WireError";
  constructor(readonly refusal: JoinRefusal) {
    super(`${refusal.check}/${refusal.code}`);
  }
}

function malformed(field: string, problem: string): WireError {
  return new WireError(joinRefusal("message-malformed", { field, problem }));
}

function bytes(o: WireObject, field: string): Uint8Array {
  const v = o[field];
  if (v === undefined || v === null) return new Uint8Array(0);
  if (!(v instanceof Uint8Array)) throw malformed(field, "must be bytes");
  return v;
}

function text(o: WireObject, field: string, max: number): string {
  const v = o[field] ?? "";
  if (typeof v !== "string") throw malformed(field, "must be a string");
  if (v.length > max) throw malformed(field, `longer than ${max} characters`);
  return v;
}

function u32(o: WireObject, field: string): number {
  const v = o[field] ?? 0;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw malformed(field, "must be a 32-bit unsigned integer");
  }
  return v;
}

function object(o: WireObject, field: string): WireObject {
  const v = o[field];
  if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof Uint8Array) {
    throw malformed(field, "missing");
  }
  return v as WireObject;
}

// Joiner -> verifier: requests, decoded on the verifier.

export function helloFromWire(req: WireObject): JoinHello {
  return {
    peerId: text(req, "peer_id", PEER_ID_CHARS_MAX),
    ekPublic: bytes(req, "ek_public"),
    ekCertificate: bytes(req, "ek_certificate"),
    akPublic: bytes(req, "ak_public"),
  };
}

export function activationFromWire(req: WireObject): JoinActivation {
  return {
    sessionId: bytes(req, "session_id"),
    credential: bytes(req, "credential"),
    tpmResponseCode: u32(req, "tpm_response_code"),
    joinTokenProof: bytes(req, "join_token_proof"),
  };
}

export function quoteFromWire(req: WireObject): JoinQuote {
  const readings = req.pcr_values ?? [];
  if (!Array.isArray(readings)) throw malformed("pcr_values", "must be a list");
  if (readings.length > PCR_READINGS_MAX)
    throw malformed("pcr_values", `more than ${PCR_READINGS_MAX} readings`);
  const pcrValues: PcrValue[] = readings.map((r: unknown) => {
    if (typeof r !== "object" || r === null) throw malformed("pcr_values", "must hold readings");
    const o = r as WireObject;
    return { hashAlg: u32(o, "hash_alg"), pcr: u32(o, "pcr"), value: bytes(o, "value") };
  });
  return {
    sessionId: bytes(req, "session_id"),
    attest: bytes(req, "attest"),
    signature: bytes(req, "signature"),
    pcrValues,
    ephemeralPublicKey: bytes(req, "ephemeral_public_key"),
    tlsPublicKey: bytes(req, "tls_public_key"),
  };
}

export function confirmFromWire(req: WireObject): JoinConfirm {
  const epoch = req.epoch ?? 0;
  if (typeof epoch !== "number" || !Number.isSafeInteger(epoch) || epoch < 0)
    throw malformed("epoch", "not an epoch");
  return {
    peerId: text(req, "peer_id", PEER_ID_CHARS_MAX),
    certificateSerial: text(req, "certificate_serial", 64),
    epoch,
    proof: bytes(req, "proof"),
  };
}

export const confirmToWire = (c: JoinConfirm): WireObject => ({
  peer_id: c.peerId,
  certificate_serial: c.certificateSerial,
  epoch: c.epoch,
  proof: Buffer.from(c.proof),
});

export const confirmedToWire = (c: JoinConfirmed): WireObject => ({ confirmed: { peer_id: c.peerId } });

export const confirmedFromWire = (o: WireObject): JoinConfirmed => ({
  peerId: text(o, "peer_id", PEER_ID_CHARS_MAX),
});

export const helloToWire = (h: JoinHello): WireObject => ({
  peer_id: h.peerId,
  ek_public: Buffer.from(h.ekPublic),
  ek_certificate: Buffer.from(h.ekCertificate),
  ak_public: Buffer.from(h.akPublic),
});

export const activationToWire = (a: JoinActivation): WireObject => ({
  session_id: Buffer.from(a.sessionId),
  credential: Buffer.from(a.credential),
  tpm_response_code: a.tpmResponseCode >>> 0,
  join_token_proof: Buffer.from(a.joinTokenProof),
});

export const quoteToWire = (q: JoinQuote): WireObject => ({
  session_id: Buffer.from(q.sessionId),
  attest: Buffer.from(q.attest),
  signature: Buffer.from(q.signature),
  pcr_values: q.pcrValues.map((v) => ({ hash_alg: v.hashAlg, pcr: v.pcr, value: Buffer.from(v.value) })),
  ephemeral_public_key: Buffer.from(q.ephemeralPublicKey),
  tls_public_key: Buffer.from(q.tlsPublicKey),
});

// Verifier -> joiner: answers, decoded on the joiner (which trusts the verifier's TLS, not its bytes).

export function refusalToWire(r: JoinRefusal): WireObject {
  return {
    check: r.check,
    code: r.code,
    details_json: JSON.stringify(r.details),
    recoverable: r.recoverable,
    quote_failures_json: r.quoteFailures === undefined ? "" : JSON.stringify(r.quoteFailures),
  };
}

export function refusalFromWire(o: WireObject): JoinRefusal {
  const check = text(o, "check", 64);
  const code = text(o, "code", 64);
  if (!isJoinCheck(check) || !isJoinRefusalCode(code))
    throw malformed("refusal", `unknown check or code ${check}/${code}`);
  const details = parseJson(text(o, "details_json", DETAILS_JSON_CHARS_MAX) || "{}", "details_json");
  const failures = text(o, "quote_failures_json", DETAILS_JSON_CHARS_MAX);
  return {
    check,
    code,
    details: details as JoinRefusal["details"],
    recoverable: o.recoverable === true,
    ...(failures.length > 0
      ? { quoteFailures: parseJson(failures, "quote_failures_json") as readonly QuoteFailure[] }
      : {}),
  };
}

export const challengeToWire = (c: JoinChallenge): WireObject => ({
  challenge: {
    session_id: Buffer.from(c.sessionId),
    credential_blob: Buffer.from(c.credentialBlob),
    encrypted_secret: Buffer.from(c.encryptedSecret),
  },
});

export const nonceToWire = (n: JoinNonce): WireObject => ({
  nonce: {
    nonce: Buffer.from(n.nonce),
    expires_in_ms: n.expiresInMs,
    pcrs: n.pcrs.map((p) => ({ hash_alg: p.hashAlg, pcr: p.pcr })),
  },
});

export const admittedToWire = (a: JoinAdmitted): WireObject => ({
  admitted: {
    cluster_id: a.clusterId,
    certificate_pem: a.certificatePem,
    ca_certificate_pem: a.caCertificatePem,
    wrapped_cmk: {
      epoch: a.wrappedCmk.epoch,
      verifier_public_key: Buffer.from(a.wrappedCmk.verifierPublicKey),
      iv: Buffer.from(a.wrappedCmk.iv),
      ciphertext: Buffer.from(a.wrappedCmk.ciphertext),
    },
    ...(a.peerSetup !== undefined
      ? {
          peer_setup: {
            address: a.peerSetup.address,
            partition_power: a.peerSetup.partitionPower,
            cluster_salt: a.peerSetup.clusterSalt,
            replication_enabled: a.peerSetup.replicationEnabled,
            seed_peers: { ...a.peerSetup.seedPeers },
          },
        }
      : {}),
  },
});

/** A response: `result` names which oneof member is set (proto-loader's `oneofs: true`). */
export function resultFromWire<T>(
  res: WireObject,
  okField: string,
  decode: (o: WireObject) => T,
): JoinResult<T> {
  if (res.result === "refusal") return { ok: false, refusal: refusalFromWire(object(res, "refusal")) };
  if (res.result !== okField) throw malformed("result", `neither ${okField} nor refusal`);
  return { ok: true, value: decode(object(res, okField)) };
}

export const challengeFromWire = (o: WireObject): JoinChallenge => ({
  sessionId: bytes(o, "session_id"),
  credentialBlob: bytes(o, "credential_blob"),
  encryptedSecret: bytes(o, "encrypted_secret"),
});

export function nonceFromWire(o: WireObject): JoinNonce {
  const pcrs = o.pcrs ?? [];
  if (!Array.isArray(pcrs) || pcrs.length > PCR_READINGS_MAX) throw malformed("pcrs", "must be a short list");
  return {
    nonce: bytes(o, "nonce"),
    expiresInMs: u32(o, "expires_in_ms"),
    pcrs: pcrs.map((p: unknown) => ({
      hashAlg: u32(p as WireObject, "hash_alg"),
      pcr: u32(p as WireObject, "pcr"),
    })),
  };
}

export function admittedFromWire(o: WireObject): JoinAdmitted {
  const w = object(o, "wrapped_cmk");
  const epoch = w.epoch;
  if (typeof epoch !== "number" || !Number.isSafeInteger(epoch) || epoch < 0)
    throw malformed("epoch", "not an epoch");
  return {
    clusterId: text(o, "cluster_id", 128),
    certificatePem: text(o, "certificate_pem", 16 * 1024),
    caCertificatePem: text(o, "ca_certificate_pem", 16 * 1024),
    wrappedCmk: {
      epoch,
      verifierPublicKey: bytes(w, "verifier_public_key"),
      iv: bytes(w, "iv"),
      ciphertext: bytes(w, "ciphertext"),
    },
    ...(o.peer_setup !== undefined && o.peer_setup !== null
      ? { peerSetup: peerSetupFromWire(object(o, "peer_setup")) }
      : {}),
  };
}

/** Shapes only; the joiner checks the values (addresses, ids) before writing them into its config. */
function peerSetupFromWire(o: WireObject): PeerSetup {
  const seeds = o.seed_peers ?? {};
  if (typeof seeds !== "object" || seeds === null || Array.isArray(seeds))
    throw malformed("seed_peers", "must be a map");
  const entries = Object.entries(seeds as Record<string, unknown>);
  if (entries.length > 1024) throw malformed("seed_peers", "more than 1024 members");
  const seedPeers: Record<string, string> = {};
  for (const [id, address] of entries) {
    if (id.length > PEER_ID_CHARS_MAX || typeof address !== "string" || address.length > 300)
      throw malformed("seed_peers", "holds a malformed entry");
    seedPeers[id] = address;
  }
  return {
    address: text(o, "address", 300),
    partitionPower: u32(o, "partition_power"),
    clusterSalt: text(o, "cluster_salt", 128),
    replicationEnabled: o.replication_enabled === true,
    seedPeers,
  };
}

function parseJson(s: string, field: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    throw malformed(field, "not JSON");
  }
}
