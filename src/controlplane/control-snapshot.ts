/**
 * The control state's snapshot image: `"LBCS" [version u8] [sha256 of the body, 32 bytes] [body]`, the
 * body being the JSON of every record. Decoding checks the bound, the magic, the version and the digest
 * before parsing, then reads every record with the same validators commands use and checks what spans
 * records (unique keys, counts), so a damaged or hostile image is refused whole and nothing changes.
 * A zero-length image is the empty state (raft's bootstrap snapshot carries no data).
 */
import { createHash } from "node:crypto";
import {
  CONTROL_LIMITS,
  readClusterCa,
  readCmkEpoch,
  readIdentity,
  readMember,
  readPolicy,
  readProjectKek,
  readRevoked,
  readRing,
  readRingUpload,
  type ClusterCaRecord,
  type CmkEpochRecord,
  type IdentityRecord,
  type MemberRecord,
  type PolicyRecord,
  type ProjectKekRecord,
  type RevokedCertificate,
  type RingRecord,
  type RingUploadRecord,
} from "./control-records.js";
import { ControlShapeInvalid, array, exactKeys, object } from "./strict-fields.js";

export const SNAPSHOT_MAGIC = "LBCS";
export const SNAPSHOT_VERSION = 1;
/** Equal to the peer transport's snapshotBytesMax: an image larger than a peer accepts is never made. */
export const SNAPSHOT_BYTES_MAX = 64 * 1024 * 1024;
const HEADER_BYTES = 4 + 1 + 32;

export interface ControlImage {
  members: MemberRecord[];
  policies: PolicyRecord[];
  ring: RingRecord | null;
  /** A ring arriving in ring.part commands; absent in images made before ring parts (read as null). */
  ringUpload: RingUploadRecord | null;
  cmkEpochs: CmkEpochRecord[];
  projectKeks: ProjectKekRecord[];
  identities: IdentityRecord[];
  revoked: RevokedCertificate[];
  ca: ClusterCaRecord | null;
}

export const EMPTY_IMAGE: ControlImage = {
  members: [],
  policies: [],
  ring: null,
  ringUpload: null,
  cmkEpochs: [],
  projectKeks: [],
  identities: [],
  revoked: [],
  ca: null,
};

/** A snapshot image this peer refuses, and why. */
export class ControlSnapshotInvalid extends Error {
  override readonly name = "ControlSnapshotInvalid";
  readonly code = "CONTROL_SNAPSHOT_INVALID";
}

export function encodeControlSnapshot(image: ControlImage): Uint8Array {
  const body = new TextEncoder().encode(JSON.stringify(image));
  const out = new Uint8Array(HEADER_BYTES + body.byteLength);
  if (out.byteLength > SNAPSHOT_BYTES_MAX) {
    // Cannot happen within CONTROL_LIMITS' bounds; if it does, failing here (fatal for the driver) is
    // better than writing an image no peer accepts.
    throw new ControlSnapshotInvalid(
      `control snapshot of ${out.byteLength} bytes exceeds ${SNAPSHOT_BYTES_MAX}`,
    );
  }
  out.set(new TextEncoder().encode(SNAPSHOT_MAGIC), 0);
  out[4] = SNAPSHOT_VERSION;
  out.set(createHash("sha256").update(body).digest(), 5);
  out.set(body, HEADER_BYTES);
  return out;
}

export function decodeControlSnapshot(bytes: Uint8Array): ControlImage {
  if (bytes.byteLength === 0) return EMPTY_IMAGE;
  if (bytes.byteLength > SNAPSHOT_BYTES_MAX) {
    throw new ControlSnapshotInvalid(
      `control snapshot of ${bytes.byteLength} bytes exceeds ${SNAPSHOT_BYTES_MAX}`,
    );
  }
  if (bytes.byteLength < HEADER_BYTES || new TextDecoder().decode(bytes.subarray(0, 4)) !== SNAPSHOT_MAGIC) {
    throw new ControlSnapshotInvalid("not a control snapshot (bad magic)");
  }
  if (bytes[4] !== SNAPSHOT_VERSION) {
    throw new ControlSnapshotInvalid(
      `control snapshot version ${bytes[4]}; this peer reads ${SNAPSHOT_VERSION}`,
    );
  }
  const body = bytes.subarray(HEADER_BYTES);
  const digest = createHash("sha256").update(body).digest();
  if (!digest.equals(bytes.subarray(5, HEADER_BYTES))) {
    throw new ControlSnapshotInvalid("control snapshot is damaged (digest mismatch)");
  }
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch {
    throw new ControlSnapshotInvalid("control snapshot body is not UTF-8 JSON");
  }
  try {
    return readImage(value);
  } catch (e) {
    if (e instanceof ControlShapeInvalid) throw new ControlSnapshotInvalid(`control snapshot: ${e.message}`);
    throw e;
  }
}

function readImage(value: unknown): ControlImage {
  const o = object(value, "image");
  exactKeys(o, "image", Object.keys(EMPTY_IMAGE));
  const list = <T>(
    key: string,
    max: number,
    read: (v: unknown, f: string) => T,
    id: (t: T) => string | number,
  ): T[] => {
    const items = array(o, key, "image", max).map((v, i) => read(v, `image.${key}[${i}]`));
    const seen = new Set<string | number>();
    for (const t of items) {
      if (seen.has(id(t))) throw new ControlShapeInvalid(`image.${key}`, `holds ${String(id(t))} twice`);
      seen.add(id(t));
    }
    return items;
  };
  return {
    members: list("members", CONTROL_LIMITS.members, readMember, (m) => m.id),
    policies: list("policies", CONTROL_LIMITS.policies, readPolicy, (p) => p.name),
    ring: o.ring === null ? null : readRing(o.ring, "image.ring"),
    ringUpload:
      o.ringUpload === undefined || o.ringUpload === null
        ? null
        : readRingUpload(o.ringUpload, "image.ringUpload"),
    cmkEpochs: list("cmkEpochs", CONTROL_LIMITS.cmkEpochs, readCmkEpoch, (e) => e.epoch),
    projectKeks: list("projectKeks", CONTROL_LIMITS.projectKeks, readProjectKek, (k) => k.project),
    identities: list("identities", CONTROL_LIMITS.identities, readIdentity, (i) => i.name),
    revoked: list("revoked", CONTROL_LIMITS.revokedCertificates, readRevoked, (r) => r.serial),
    ca: o.ca === null ? null : readClusterCa(o.ca, "image.ca"),
  };
}
