/**
 * The joining machine's side of the attested join (DESIGN.md §5), run with
 * its own TPM: present the EK (and its certificate) and an AK, prove with
 * ActivateCredential that both live in this TPM, quote the policy's PCRs
 * over H(nonce || ephemeral key), and open the CMK wrapped to that key
 * (attestToCluster: the cluster now holds the member as joining); then, once
 * the caller has sealed the CMK, confirm to any member that it holds it
 * (confirmJoin: the member becomes active). A refusal comes back as
 * JoinRefusedError carrying the verifier's JoinRefusal, for the operator to read.
 *
 * The steps are exported one by one so tests can play a joiner that lies at
 * exactly one of them; joinCluster() runs them honestly.
 */
import { X509Certificate } from "node:crypto";
import { withTransient } from "../../tpm/client/scoped.js";
import type { Tpm, TpmObject } from "../../tpm/client/tpm.js";
import { TpmError } from "../../tpm/client/tpm-error.js";
import { activateCredential } from "../../tpm/activate-credential.js";
import { readEk } from "../../tpm/ek/read-ek.js";
import { createAk } from "../../tpm/keys/ak.js";
import { decodeExact } from "../../tpm/marshal/reader.js";
import { encode } from "../../tpm/marshal/writer.js";
import { quote } from "../../tpm/quote.js";
import { TpmsIdObject } from "../../tpm/spec/credential.js";
import { TpmlPcrSelection, TpmsPcrSelection } from "../../tpm/spec/pcr.js";
import type { PcrValue } from "../../tpm/verify/pcr-values.js";
import {
  type EphemeralKeyPair,
  generateEphemeralKeyPair,
  unwrapCmkFromVerifier,
} from "./ephemeral-key-wrap.js";
import type { CmkEpoch, PeerSetup } from "./join-authority.js";
import { joinConfirmProof } from "./join-confirm.js";
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
  QuotedPcr,
} from "./join-messages.js";
import { type JoinRefusal, describeJoinRefusal, joinRefusal } from "./join-refusal.js";
import { type JoinToken, joinTokenHash, joinTokenProof } from "./join-token.js";
import { quoteExtraData } from "./quote-binding.js";
import { restoreClockSafe } from "./restore-clock-safe.js";

/** The verifier as the joiner reaches it: over gRPC (join-client.ts) or in process. */
export interface JoinChannel {
  begin(hello: JoinHello): Promise<JoinResult<JoinChallenge>>;
  activate(activation: JoinActivation): Promise<JoinResult<JoinNonce>>;
  attest(quote: JoinQuote): Promise<JoinResult<JoinAdmitted>>;
  confirm(confirm: JoinConfirm): Promise<JoinResult<JoinConfirmed>>;
}

export class JoinRefusedError extends Error {
  override readonly name = "JoinRefusedError";
  readonly code = "join-refused";
  constructor(readonly refusal: JoinRefusal) {
    super(`the cluster refused the join: ${describeJoinRefusal(refusal)}`);
  }
}

export interface JoinOptions {
  readonly tpm: Tpm;
  readonly peerId: string;
  readonly channel: JoinChannel;
  /** The join token `peer enroll` printed, when there is one. */
  readonly joinToken?: JoinToken;
  /** The TLS public key (SPKI DER) to be certified; its private key stays with the caller. */
  readonly tlsPublicKeySpki: Uint8Array;
}

export interface Joined {
  readonly clusterId: string;
  /** The PCRs the cluster's policy names: the ones to seal the CMK to. */
  readonly pcrs: readonly QuotedPcr[];
  readonly certificatePem: string;
  readonly caCertificatePem: string;
  /** The CMK; the caller seals it to this TPM and zeroes it. */
  readonly cmk: CmkEpoch;
  /** The confirmation to send once the CMK is sealed (it holds no key bytes; confirmJoin). */
  readonly confirm: JoinConfirm;
  /** For the peer's config.json, when the verifier sent it. */
  readonly peerSetup?: PeerSetup;
}

/**
 * The whole join: attest, `persist` (seal the CMK, write the files), then confirm through the same
 * channel. A join whose persist or confirm fails leaves the member joining; the cluster undoes that.
 */
export async function joinCluster(
  options: JoinOptions & { persist?: (joined: Joined) => Promise<void> },
): Promise<Joined> {
  const joined = await attestToCluster(options);
  try {
    await options.persist?.(joined);
    await confirmJoin(options.channel, joined.confirm);
  } catch (err) {
    joined.cmk.key.fill(0);
    throw err;
  }
  return joined;
}

/** Step 4, after the CMK is sealed: the admission becomes an active member. Throws JoinRefusedError. */
export async function confirmJoin(channel: JoinChannel, confirm: JoinConfirm): Promise<void> {
  unwrap(await channel.confirm(confirm));
}

/** Steps 1 to 3: the member is joining once this returns. */
export async function attestToCluster(options: JoinOptions): Promise<Joined> {
  const { tpm, peerId, channel } = options;
  return tpm.exclusive(() =>
    withTransient(
      tpm,
      () => createAk(tpm),
      async (ak) => {
        const challenge = unwrap(await channel.begin(await joinerHello(tpm, peerId, ak)));
        const answer = await answerChallenge(tpm, ak, challenge);
        const proof =
          options.joinToken === undefined
            ? new Uint8Array(0)
            : joinTokenProof(joinTokenHash(options.joinToken), {
                sessionId: challenge.sessionId,
                peerId,
                akName: ak.name,
              });
        const nonce = unwrap(await channel.activate({ ...answer, joinTokenProof: proof }));
        const { message, ephemeral } = await quoteForNonce(
          tpm,
          ak,
          challenge.sessionId,
          nonce,
          options.tlsPublicKeySpki,
        );
        const admitted = unwrap(await channel.attest(message));
        const key = unwrapCmkFromVerifier({
          wrapped: admitted.wrappedCmk,
          peerId,
          nonce: nonce.nonce,
          ephemeral,
        });
        let certificateSerial: string;
        try {
          certificateSerial = new X509Certificate(admitted.certificatePem).serialNumber.toUpperCase();
        } catch {
          key.fill(0);
          throw new JoinRefusedError(
            joinRefusal("message-malformed", { field: "certificate_pem", problem: "not a certificate" }),
          );
        }
        return {
          clusterId: admitted.clusterId,
          pcrs: nonce.pcrs,
          certificatePem: admitted.certificatePem,
          caCertificatePem: admitted.caCertificatePem,
          cmk: { epoch: admitted.wrappedCmk.epoch, key },
          confirm: {
            peerId,
            certificateSerial,
            epoch: admitted.wrappedCmk.epoch,
            proof: joinConfirmProof(key, peerId, certificateSerial),
          },
          ...(admitted.peerSetup !== undefined ? { peerSetup: admitted.peerSetup } : {}),
        };
      },
    ),
  );
}

/** Step 1: this TPM's EK, its certificate from NV, and the AK. */
export async function joinerHello(tpm: Tpm, peerId: string, ak: TpmObject): Promise<JoinHello> {
  const ek = await readEk(tpm);
  return {
    peerId,
    ekPublic: encode((w) => ek.ekPublic.marshal(w)),
    ekCertificate: ek.certificateDer,
    akPublic: encode((w) => ak.publicArea.marshal(w)),
  };
}

/** Step 2: ActivateCredential. A TPM that refuses (the AK is not next to this EK) gives an empty answer and its code. */
export async function answerChallenge(
  tpm: Tpm,
  ak: TpmObject,
  challenge: JoinChallenge,
): Promise<Omit<JoinActivation, "joinTokenProof">> {
  let credentialBlob: TpmsIdObject;
  try {
    credentialBlob = decodeExact(challenge.credentialBlob, "TPMS_ID_OBJECT", TpmsIdObject.unmarshal);
  } catch {
    return { sessionId: challenge.sessionId, credential: new Uint8Array(0), tpmResponseCode: 0 };
  }
  try {
    const credential = await activateCredential(tpm, ak, {
      credentialBlob,
      secret: challenge.encryptedSecret,
    });
    return { sessionId: challenge.sessionId, credential, tpmResponseCode: 0 };
  } catch (err) {
    if (!(err instanceof TpmError)) throw err;
    return { sessionId: challenge.sessionId, credential: new Uint8Array(0), tpmResponseCode: err.rc };
  }
}

/** Step 3: a fresh ephemeral key, the quote over H(nonce || its public key), and the PCR values quoted. */
export async function quoteForNonce(
  tpm: Tpm,
  ak: TpmObject,
  sessionId: Uint8Array,
  nonce: JoinNonce,
  tlsPublicKeySpki: Uint8Array,
): Promise<{ message: JoinQuote; ephemeral: EphemeralKeyPair }> {
  const ephemeral = generateEphemeralKeyPair();
  const pcrs = selection(nonce.pcrs);
  await restoreClockSafe(tpm);
  const q = await quote(tpm, ak, { pcrs, extraData: quoteExtraData(nonce.nonce, ephemeral.publicKey) });
  const read = await tpm.pcrRead(pcrs);
  const pcrValues: PcrValue[] = read.values.map((v) => ({ hashAlg: v.hash, pcr: v.pcr, value: v.digest }));
  return {
    ephemeral,
    message: {
      sessionId,
      attest: q.attestBytes,
      signature: encode((w) => q.signature.marshal(w)),
      pcrValues,
      ephemeralPublicKey: ephemeral.publicKey,
      tlsPublicKey: tlsPublicKeySpki,
    },
  };
}

/** The PCRs to quote as a TPM selection, banks in first-seen order. */
export function selection(pcrs: readonly QuotedPcr[]): TpmlPcrSelection {
  const banks = [...new Set(pcrs.map((p) => p.hashAlg))];
  return new TpmlPcrSelection(
    banks.map((hash) =>
      TpmsPcrSelection.of(
        hash,
        pcrs.filter((p) => p.hashAlg === hash).map((p) => p.pcr),
      ),
    ),
  );
}

function unwrap<T>(result: JoinResult<T>): T {
  if (!result.ok) throw new JoinRefusedError(result.refusal);
  return result.value;
}
