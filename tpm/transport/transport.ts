/**
 * The one seam between tpm/ and a TPM: command bytes in, response bytes out
 * (DESIGN.md §5). Everything above it builds and parses TPM 2.0 byte
 * streams; everything below it only moves bytes. Implementations deliver one
 * command at a time per TPM, in the order `send` was called.
 */
export interface TpmTransport {
  send(command: Uint8Array): Promise<Uint8Array>;
  close(): Promise<void>;
}
