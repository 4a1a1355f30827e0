/**
 * Qualified names (TPM 2.0 Part 1 §16.6): an object's qualified name is
 * nameAlg || H(parent's qualified name || object's name); a hierarchy's
 * qualified name is its handle. TPMS_ATTEST.qualifiedSigner holds the
 * signing key's QUALIFIED name (measured on swtpm: for an AK under the EK it
 * is H(H(0x4000000b || EK name) || AK name)), so a verifier needs the AK's
 * parent chain, not only the AK's name.
 */
import { TPM_RH } from "../spec/constants.js";
import { handleName, tpmHash } from "../spec/name.js";

/** The qualified name of `name` (an object's name) under a parent with `parentQualifiedName`. */
export function qualifiedName(parentQualifiedName: Uint8Array, name: Uint8Array): Uint8Array {
  if (name.length < 2) throw new RangeError("an object name starts with a 2-byte hash algorithm id");
  const nameAlg = (name[0]! << 8) | name[1]!;
  const digest = tpmHash(nameAlg, parentQualifiedName, name);
  const out = new Uint8Array(2 + digest.length);
  out.set(name.subarray(0, 2), 0);
  out.set(digest, 2);
  return out;
}

/** A hierarchy's qualified name: its handle. */
export function hierarchyQualifiedName(hierarchy: number): Uint8Array {
  return handleName(hierarchy);
}

/** The qualified name of a primary key in the endorsement hierarchy (the EK, or an AK created as a primary). */
export function endorsementPrimaryQualifiedName(name: Uint8Array): Uint8Array {
  return qualifiedName(hierarchyQualifiedName(TPM_RH.ENDORSEMENT), name);
}
