/**
 * The joiner's way to a member: authenticate the cluster first, then run the
 * join steps over a channel that only that cluster's members can answer.
 *
 * The joiner knows the cluster only by the SHA-256 fingerprint of its CA
 * certificate (`--ca-fingerprint`, or the one inside a join token). It asks
 * the member for the CA certificate over a connection it does not yet trust,
 * keeps it only if its fingerprint is the expected one, and then opens the
 * join channel with that CA as its only trust anchor and a server
 * certificate that must be a lockbox peer's. So a joiner never sends its
 * token proof, nor accepts a certificate or CMK, from a cluster it could not
 * authenticate: a man in the middle can answer the first call, never a later one.
 */
import * as grpc from "@grpc/grpc-js";
import { X509Certificate, createHash } from "node:crypto";
import { isIP } from "node:net";
import { checkServerIdentity } from "node:tls";
import { parseHostPort } from "../net/host-port.js";
import { PEER_URI_PREFIX } from "../pki/peer-certificate-verifier.js";
import type { JoinChannel } from "./joiner.js";
import { loadJoinService } from "./join-proto.js";
import {
  type WireObject,
  activationToWire,
  admittedFromWire,
  challengeFromWire,
  confirmToWire,
  confirmedFromWire,
  helloToWire,
  nonceFromWire,
  quoteToWire,
  resultFromWire,
} from "./join-wire.js";

export const JOIN_CALL_TIMEOUT_MS_DEFAULT = 15_000;
/** The largest answer a joiner accepts (an admission: two certificates and a wrapped key). */
const RESPONSE_BYTES_MAX = 64 * 1024;

export class ClusterAuthenticationError extends Error {
  override readonly name = "ClusterAuthenticationError";
  constructor(
    readonly code: "ca-fingerprint-mismatch" | "ca-malformed" | "unreachable",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface JoinConnection extends JoinChannel {
  /** The cluster CA, as authenticated by its fingerprint. */
  readonly caCertificatePem: string;
  close(): void;
}

export async function connectToCluster(p: {
  /** HOST:PORT of a member. */
  address: string;
  /** Lower-case hex SHA-256 of the cluster CA certificate's DER. */
  caFingerprint: string;
  callTimeoutMs?: number;
}): Promise<JoinConnection> {
  const JoinService = loadJoinService();
  const timeoutMs = p.callTimeoutMs ?? JOIN_CALL_TIMEOUT_MS_DEFAULT;
  const host = parseHostPort(p.address)?.host;
  if (host === undefined)
    throw new ClusterAuthenticationError("unreachable", `not a HOST:PORT address: ${p.address}`);
  const options = {
    "grpc.max_receive_message_length": RESPONSE_BYTES_MAX,
    // TLS server names cannot be IP addresses (RFC 6066): name one the peer certificate always has;
    // checkServerIdentity below still checks the address actually dialled.
    ...(isIP(host) !== 0
      ? { "grpc.ssl_target_name_override": "localhost", "grpc.default_authority": "localhost" }
      : {}),
  };

  // 1. The CA certificate, over a connection not yet trusted: only its fingerprint makes it good.
  const untrusted = new JoinService(
    p.address,
    grpc.credentials.createSsl(null, null, null, { rejectUnauthorized: false }),
    options,
  );
  let caPem: string;
  try {
    const res = await unary(untrusted, "GetClusterCa", {}, timeoutMs).catch((cause: unknown) => {
      throw new ClusterAuthenticationError("unreachable", `cannot reach ${p.address}`, { cause });
    });
    caPem = typeof res.ca_certificate_pem === "string" ? res.ca_certificate_pem : "";
  } finally {
    untrusted.close();
  }
  let ca: X509Certificate;
  try {
    ca = new X509Certificate(caPem);
  } catch (cause) {
    throw new ClusterAuthenticationError("ca-malformed", `${p.address} sent no valid CA certificate`, {
      cause,
    });
  }
  const fingerprint = createHash("sha256").update(ca.raw).digest("hex");
  if (fingerprint !== p.caFingerprint) {
    throw new ClusterAuthenticationError(
      "ca-fingerprint-mismatch",
      `the cluster at ${p.address} has CA fingerprint ${fingerprint}, not the expected ${p.caFingerprint}: not joining it`,
    );
  }
  if (!ca.ca)
    throw new ClusterAuthenticationError("ca-malformed", "the fingerprinted certificate is not a CA");

  // 2. The join channel: TLS chains the server to that CA only; the server must be a lockbox peer.
  const client = new JoinService(
    p.address,
    grpc.credentials.createSsl(Buffer.from(caPem), null, null, {
      checkServerIdentity: (_name, cert) => {
        const hostError = checkServerIdentity(host, cert);
        if (hostError !== undefined) return hostError;
        return (cert.subjectaltname ?? "").includes(`URI:${PEER_URI_PREFIX}`)
          ? undefined
          : new Error(`the server at ${host} is not a lockbox peer`);
      },
    }),
    options,
  );
  return {
    caCertificatePem: caPem,
    close: () => client.close(),
    begin: async (hello) =>
      resultFromWire(
        await unary(client, "BeginJoin", helloToWire(hello), timeoutMs),
        "challenge",
        challengeFromWire,
      ),
    activate: async (a) =>
      resultFromWire(
        await unary(client, "ActivateJoin", activationToWire(a), timeoutMs),
        "nonce",
        nonceFromWire,
      ),
    attest: async (q) =>
      resultFromWire(
        await unary(client, "AttestJoin", quoteToWire(q), timeoutMs),
        "admitted",
        admittedFromWire,
      ),
    confirm: async (c) =>
      resultFromWire(
        await unary(client, "ConfirmJoin", confirmToWire(c), timeoutMs),
        "confirmed",
        confirmedFromWire,
      ),
  };
}

type UnaryMethod = (
  request: WireObject,
  options: grpc.CallOptions,
  callback: (err: grpc.ServiceError | null, response: WireObject) => void,
) => void;

function unary(
  client: grpc.Client,
  method: string,
  request: WireObject,
  timeoutMs: number,
): Promise<WireObject> {
  const fn = (client as unknown as Record<string, UnaryMethod>)[method]!;
  return new Promise((resolve, reject) =>
    fn.call(client, request, { deadline: Date.now() + timeoutMs }, (err, res) =>
      err ? reject(err) : resolve(res),
    ),
  );
}
