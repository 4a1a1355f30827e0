/**
 * The TLS policy of every lockbox connection, server and client alike
 * (DESIGN.md §6, issue 8 item 5): TLS 1.3, or TLS 1.2 with an ephemeral ECDHE
 * key exchange and an AEAD cipher (AES-GCM or ChaCha20-Poly1305). No CBC, no
 * SHA-1 MACs, no RSA or finite-field DH key exchange, no CCM(8), ARIA or
 * Camellia: OpenSSL's default list offers all of those for TLS 1.2.
 */

/** The lowest protocol version either side speaks. */
export const TLS_MIN_VERSION = "TLSv1.2" as const;

/** TLS 1.3 suites (all AEAD), strongest first. */
const TLS13_SUITES = ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"];

/** TLS 1.2: ECDHE key exchange with an AEAD cipher only, for ECDSA and RSA certificates. */
export const TLS12_SUITES: readonly string[] = [
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
];

/** The OpenSSL cipher string for node:tls `ciphers` (it takes TLS 1.3 suite names too). */
export const TLS_CIPHERS = [...TLS13_SUITES, ...TLS12_SUITES].join(":");

/** Key exchange groups for ECDHE and TLS 1.3. */
export const TLS_ECDH_CURVES = "X25519:P-256:P-384";
