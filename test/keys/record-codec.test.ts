/**
 * The stored forms of records and the keyed values derived from requests are data contracts: stored
 * records, their MACs, request fingerprints and ring key ids must stay byte for byte what they
 * were when written. Pinned by vectors produced by the original implementation, under a fixed key.
 */
import test from "ava";
import { recordMac } from "../../src/crypto/record-mac.js";
import { requestFingerprint, requestKeyId } from "../../src/keys/client-requests.js";
import type { Consumer, Grant, KeyRecord } from "../../src/keys/key-model.js";
import type { ProjectKeys } from "../../src/keys/project-keks.js";
import {
  authenticateClientRequest,
  authenticateConsumer,
  authenticateGrant,
  authenticateKeyRecord,
  encodeClientRequest,
  encodeConsumer,
  encodeGrant,
  encodeKeyRecord,
  keyRecordBinding,
  parseClientRequest,
  parseConsumer,
  parseGrant,
  parseKeyRecord,
  type ClientRequestEntry,
} from "../../src/keys/record-codec.js";

const macKey = Uint8Array.from({ length: 32 }, (_, i) => 0x10 + i);
const keys: ProjectKeys = { kek: macKey, recordMacKey: macKey };
const at = new Date(1_764_000_000_000);
const record: KeyRecord = {
  id: "0192f3a4-5b6c-8d7e-9f80-1a2b3c4d5e6f",
  project: "tenant-a",
  scope: "vol-1",
  name: "k é",
  secretType: "symmetric",
  algorithm: "AES",
  bitLength: 256,
  parentId: "",
  createdAt: at,
  updatedAt: at,
  state: "active",
  wrappedMaterial: Uint8Array.from({ length: 65 }, (_, i) => i * 3),
};
const destroyed: KeyRecord = {
  id: record.id,
  project: record.project,
  scope: record.scope,
  name: record.name,
  secretType: "passphrase",
  algorithm: "",
  bitLength: 0,
  parentId: "",
  createdAt: at,
  updatedAt: new Date(1_764_000_009_000),
  state: "destroyed",
  destroyedAt: new Date(1_764_000_005_000),
  expiresAt: new Date(1_764_100_000_000),
};
const grant: Grant = {
  id: "g-1",
  keyId: record.id,
  grantee: "user:bob",
  grantedBy: "user:alice",
  createdAt: at,
  expiresAt: new Date(1_764_003_600_000),
  revokedAt: new Date(1_764_000_100_000),
};
const consumer: Consumer = { service: "cinder", resourceType: "volume", resourceId: "v-9", createdAt: at };
const entry: ClientRequestEntry = {
  identity: "user:bench@example",
  requestId: "3f0c8a9e-1d2b-4c5d-8e6f-7a8b9c0d1e2f",
  method: "CreateKey",
  project: "tenant-a",
  keyId: record.id,
  fingerprint: "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=",
  createdAt: at,
};

const text = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("utf8");

test("records are stored as the known bytes, and read back as the same records", (t) => {
  const stored = {
    keyRecord: encodeKeyRecord(record, macKey),
    destroyed: encodeKeyRecord(destroyed, macKey),
    grant: encodeGrant(grant, macKey),
    consumer: encodeConsumer(record.id, consumer, macKey),
    clientRequest: encodeClientRequest(entry, macKey),
  };
  t.is(
    text(stored.keyRecord),
    '{"v":2,"id":"0192f3a4-5b6c-8d7e-9f80-1a2b3c4d5e6f","project":"tenant-a","scope":"vol-1","name":"k é","algorithm":"AES","bitLength":256,"createdAtMs":1764000000000,"state":"active","parentId":"","wrappedMaterial":"AAMGCQwPEhUYGx4hJCcqLTAzNjk8P0JFSEtOUVRXWl1gY2ZpbG9ydXh7foGEh4qNkJOWmZyfoqWoq66xtLe6vcA=","mac":"QiZJcWH4tpOInZ8+BWpVry6gVl7euCwQ6xfqxiC+YDc="}',
  );
  t.is(
    text(stored.destroyed),
    '{"v":2,"id":"0192f3a4-5b6c-8d7e-9f80-1a2b3c4d5e6f","project":"tenant-a","scope":"vol-1","name":"k é","algorithm":"","bitLength":0,"createdAtMs":1764000000000,"state":"destroyed","parentId":"","destroyedAtMs":1764000005000,"secretType":"passphrase","expiresAtMs":1764100000000,"updatedAtMs":1764000009000,"mac":"Cmcu/jv/UDa5+h8o+EbvY6tW9H9TwuTHeP1EjeT0peE="}',
  );
  t.is(
    text(stored.grant),
    '{"v":2,"id":"g-1","keyId":"0192f3a4-5b6c-8d7e-9f80-1a2b3c4d5e6f","grantee":"user:bob","grantedBy":"user:alice","createdAtMs":1764000000000,"expiresAtMs":1764003600000,"revokedAtMs":1764000100000,"mac":"Q8WMFZOQ8GD2ZP1YhRlx9i0wGx24M0uynKCJl+D2fTw="}',
  );
  t.is(
    text(stored.consumer),
    '{"v":2,"keyId":"0192f3a4-5b6c-8d7e-9f80-1a2b3c4d5e6f","service":"cinder","resourceType":"volume","resourceId":"v-9","createdAtMs":1764000000000,"mac":"kJS/JoxI1UaJLlbGP3x/fe1AhxGpGJQ5KEUfk2bdNGg="}',
  );
  t.is(
    text(stored.clientRequest),
    '{"v":2,"identity":"user:bench@example","requestId":"3f0c8a9e-1d2b-4c5d-8e6f-7a8b9c0d1e2f","method":"CreateKey","project":"tenant-a","keyId":"0192f3a4-5b6c-8d7e-9f80-1a2b3c4d5e6f","fingerprint":"q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=","createdAtMs":1764000000000,"mac":"omxsTgUWuoS4JzWfaZ/rXcAhz8qbiUWg5+t6cOQwuPk="}',
  );
  t.deepEqual(authenticateKeyRecord(parseKeyRecord(stored.keyRecord, "k"), macKey, "k"), record);
  t.deepEqual(authenticateKeyRecord(parseKeyRecord(stored.destroyed, "k"), macKey, "k"), destroyed);
  t.deepEqual(authenticateGrant(parseGrant(stored.grant, "g"), macKey, "g"), grant);
  t.deepEqual(authenticateConsumer(parseConsumer(stored.consumer, "c"), macKey, "c"), {
    keyId: record.id,
    consumer,
  });
  t.deepEqual(authenticateClientRequest(parseClientRequest(stored.clientRequest, "r"), macKey, "r"), entry);
});

test("record MACs, request fingerprints and request key ids are the known values", (t) => {
  t.is(
    Buffer.from(recordMac(macKey, keyRecordBinding(record))).toString("hex"),
    "4226497161f8b693889d9f3e056a55af2ea0565edeb82c10eb17eac620be6037",
  );
  t.is(
    requestFingerprint(keys, {
      method: "CreateKey",
      attributes: { project: "tenant-a", scope: "vol-1", name: "k", bitLength: 256 },
    }),
    "7GPWvLN9qmlvuHZnMry1WrODVlfm6CnF87dFEZ6tibs=",
  );
  t.is(
    requestFingerprint(keys, {
      method: "ImportKey",
      attributes: { project: "tenant-a", scope: "vol-1", name: "k" },
      material: Uint8Array.from({ length: 16 }, (_, i) => i),
    }),
    "5UdRKKLnbap8TeGELo32sachly3LXUy88KYhgFNO+Is=",
  );
  const salt = Uint8Array.from({ length: 16 }, (_, i) => 0xf0 + i / 2);
  t.is(
    requestKeyId(salt, entry.identity, entry.requestId, "tenant-a", "vol-1"),
    "2974a9af-6b67-8e99-a915-0040c7dbca6d",
  );
});
