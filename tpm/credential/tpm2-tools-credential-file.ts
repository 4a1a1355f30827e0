/**
 * The file layout tpm2_makecredential writes and tpm2_activatecredential
 * reads (`-o` / `-i`): magic 0xBADCC0DE, version 1, then TPM2B_ID_OBJECT and
 * TPM2B_ENCRYPTED_SECRET. Lets operators use tpm2-tools against our blobs.
 */
import { decodeExact } from "../marshal/reader.js";
import { encode } from "../marshal/writer.js";
import { Tpm2bIdObject, type TpmsIdObject } from "../spec/credential.js";
import { LIMITS } from "../spec/limits.js";
import { TpmDecodeError } from "../marshal/decode-error.js";

const MAGIC = 0xbadcc0de;
const VERSION = 1;

export function encodeTpm2ToolsCredential(credentialBlob: TpmsIdObject, secret: Uint8Array): Uint8Array {
  return encode((w) => {
    w.u32(MAGIC).u32(VERSION);
    new Tpm2bIdObject(credentialBlob).marshal(w);
    w.tpm2b(secret);
  });
}

export function decodeTpm2ToolsCredential(bytes: Uint8Array): {
  credentialBlob: TpmsIdObject;
  secret: Uint8Array;
} {
  return decodeExact(bytes, "tpm2-tools credential file", (r) => {
    if (r.u32("magic") !== MAGIC)
      throw new TpmDecodeError("INCONSISTENT", "tpm2-tools credential file", "bad magic");
    if (r.u32("version") !== VERSION)
      throw new TpmDecodeError("INCONSISTENT", "tpm2-tools credential file", "bad version");
    const id = Tpm2bIdObject.unmarshal(r).credential;
    if (id === undefined)
      throw new TpmDecodeError("INCONSISTENT", "tpm2-tools credential file", "empty ID object");
    return { credentialBlob: id, secret: r.tpm2b("TPM2B_ENCRYPTED_SECRET", LIMITS.encryptedSecretBytes) };
  });
}
