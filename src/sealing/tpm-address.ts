/**
 * Where a peer's TPM is: `swtpm:HOST:PORT` (a swtpm data port, for tests and
 * development) or `device:PATH` (the kernel resource manager, /dev/tpmrm0 in
 * production). The same spelling as `lockbox tpm --tpm`.
 */
import { LockboxError } from "../errors.js";
import { describeHostPort, parseHostPort } from "../net/host-port.js";
import { DeviceTransport, TcpTransport, type TpmTransport } from "../../tpm/index-verify.js";

export type TpmAddress =
  | { readonly kind: "swtpm"; readonly host: string; readonly port: number; readonly spec: string }
  | { readonly kind: "device"; readonly path: string; readonly spec: string };

export const TPM_ADDRESS_RULE = `swtpm:${describeHostPort()} or device:PATH`;

/** Parses a TPM address, or undefined if `spec` is not one. */
export function parseTpmAddress(spec: string): TpmAddress | undefined {
  if (spec.startsWith("swtpm:")) {
    const address = parseHostPort(spec.slice("swtpm:".length));
    return address === undefined ? undefined : { kind: "swtpm", ...address, spec };
  }
  if (spec.startsWith("device:") && spec.length > "device:".length && !spec.includes("\0")) {
    return { kind: "device", path: spec.slice("device:".length), spec };
  }
  return undefined;
}

export function requireTpmAddress(spec: string, field: string): TpmAddress {
  const a = parseTpmAddress(spec);
  if (a === undefined)
    throw new LockboxError("INVALID_ARGUMENT", `${field} must be ${TPM_ADDRESS_RULE}, got '${spec}'`, field);
  return a;
}

export function openTpmTransport(address: TpmAddress): Promise<TpmTransport> {
  return address.kind === "swtpm"
    ? TcpTransport.connect({ host: address.host, port: address.port })
    : DeviceTransport.open({ path: address.path });
}
