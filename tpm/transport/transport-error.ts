/**
 * Failures of moving bytes to and from a TPM, as opposed to the TPM refusing
 * a command (that is a response code, decoded above the transport). Callers
 * branch on `code`, never on the message.
 */
export type TpmTransportErrorCode =
  | "connect" // could not reach the TPM (refused, unreachable, timed out connecting)
  | "device-not-found" // the character device does not exist
  | "device-access" // the device exists but may not be opened (permissions, busy)
  | "io" // the connection or device failed mid-command
  | "timeout" // no complete response within the deadline
  | "short-response" // the peer closed before the size the header announced
  | "oversize-response" // the header announces more than the limit, or bytes follow the response
  | "bad-response-header" // fewer than 10 bytes or a size below the header size
  | "bad-command" // the command is not a well-formed TPM command frame
  | "busy" // too many commands already queued for this TPM
  | "closed"; // the transport was closed, or broken by an earlier failure

export class TpmTransportError extends Error {
  override readonly name = "TpmTransportError";
  constructor(
    readonly code: TpmTransportErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Every TPM command and response starts with tag (2), size (4), code (4). */
export const TPM_HEADER_BYTES = 10;

/** Large enough for any response to the commands tpm/ issues (TPM2 buffers are <= 4 KiB). */
export const DEFAULT_RESPONSE_BYTES_MAX = 8192;

/**
 * Checks that `command` is a frame whose header size equals its length, so a
 * caller bug is reported here rather than as a TPM hang waiting for bytes.
 */
export function assertCommandFrame(command: Uint8Array): void {
  if (command.length < TPM_HEADER_BYTES) {
    throw new TpmTransportError(
      "bad-command",
      `command is ${command.length} bytes, shorter than the ${TPM_HEADER_BYTES}-byte header`,
    );
  }
  const size = readSize(command);
  if (size !== command.length) {
    throw new TpmTransportError(
      "bad-command",
      `command header announces ${size} bytes but the command is ${command.length} bytes`,
    );
  }
}

/** The big-endian size field at offset 2 of a command or response header. */
export function readSize(header: Uint8Array): number {
  return new DataView(header.buffer, header.byteOffset, header.byteLength).getUint32(2, false);
}

/**
 * Validates a response header's size field against the limit; returns the
 * total response size.
 */
export function responseSizeFromHeader(header: Uint8Array, responseBytesMax: number): number {
  if (header.length < TPM_HEADER_BYTES) {
    throw new TpmTransportError(
      "bad-response-header",
      `response is ${header.length} bytes, shorter than the ${TPM_HEADER_BYTES}-byte header`,
    );
  }
  const size = readSize(header);
  if (size < TPM_HEADER_BYTES) {
    throw new TpmTransportError(
      "bad-response-header",
      `response header announces ${size} bytes, less than the header itself`,
    );
  }
  if (size > responseBytesMax) {
    throw new TpmTransportError(
      "oversize-response",
      `response header announces ${size} bytes, more than the limit of ${responseBytesMax}`,
    );
  }
  return size;
}
