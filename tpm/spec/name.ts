import { createHash } from "node:crypto";
import { encode } from "../marshal/writer.js";
import { nodeHashName } from "./hash.js";
import type { TpmsNvPublic } from "./nv.js";
import type { TpmtPublic } from "./public.js";

/** Thrown when a name cannot be computed because the name algorithm is unknown. */
export class TpmNameError extends Error {
  override readonly name = "TpmNameError";
  readonly code = "UNSUPPORTED_NAME_ALG";
}

/** H(bytes) with a TPM hash algorithm id. */
export function tpmHash(hashAlg: number, ...parts: Uint8Array[]): Uint8Array {
  const name = nodeHashName(hashAlg);
  if (name === undefined) throw new TpmNameError(`unsupported hash algorithm 0x${hashAlg.toString(16)}`);
  const h = createHash(name);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

function nameOf(nameAlg: number, area: Uint8Array): Uint8Array {
  const digest = tpmHash(nameAlg, area);
  const out = new Uint8Array(2 + digest.length);
  out[0] = nameAlg >>> 8;
  out[1] = nameAlg & 0xff;
  out.set(digest, 2);
  return out;
}

/** An object's name: nameAlg (2 bytes, big-endian) || H_nameAlg(marshalled TPMT_PUBLIC). */
export function objectName(publicArea: TpmtPublic): Uint8Array {
  return nameOf(
    publicArea.nameAlg,
    encode((w) => publicArea.marshal(w)),
  );
}

/** An NV index's name: nameAlg || H_nameAlg(marshalled TPMS_NV_PUBLIC). */
export function nvName(nvPublic: TpmsNvPublic): Uint8Array {
  return nameOf(
    nvPublic.nameAlg,
    encode((w) => nvPublic.marshal(w)),
  );
}

/** The name of a PCR, session or permanent handle: the handle itself, 4 bytes big-endian. */
export function handleName(handle: number): Uint8Array {
  return encode((w) => w.u32(handle));
}
