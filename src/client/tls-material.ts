/**
 * mTLS material for a client: the cluster CA, the client's certificate and its
 * private key, each given as PEM (Buffer or string starting with "-----BEGIN")
 * or as a path to a PEM file.
 */
import { readFileSync } from "node:fs";

export type PemSource = Buffer | string;

export interface ClientTlsSource {
  ca: PemSource;
  cert: PemSource;
  key: PemSource;
}

export interface ClientTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export class TlsMaterialError extends Error {
  override readonly name = "TlsMaterialError";
  readonly code = "INVALID_TLS_MATERIAL";
  constructor(
    /** "ca", "cert" or "key". */
    readonly which: keyof ClientTlsSource,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

function loadOne(which: keyof ClientTlsSource, source: PemSource): Buffer {
  let pem: Buffer;
  if (Buffer.isBuffer(source)) {
    pem = source;
  } else if (source.trimStart().startsWith("-----BEGIN")) {
    pem = Buffer.from(source);
  } else {
    try {
      pem = readFileSync(source);
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code ?? "unreadable";
      throw new TlsMaterialError(which, `${which}: cannot read ${source} (${reason})`, { cause: err });
    }
  }
  // Only the header is checked: the PEM of a key must never be echoed back in an error.
  if (!pem.includes("-----BEGIN")) throw new TlsMaterialError(which, `${which}: not a PEM file`);
  return pem;
}

export function loadClientTls(source: ClientTlsSource): ClientTls {
  return {
    ca: loadOne("ca", source.ca),
    cert: loadOne("cert", source.cert),
    key: loadOne("key", source.key),
  };
}
