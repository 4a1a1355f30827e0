/**
 * lockbox.v1.KeyService at the edge: each RPC converts its wire request into
 * the key service's input (wire-mapping.ts), calls the key service with the
 * authenticated caller, and maps the result back. Validation of values is
 * the key service's (src/keys/validation.ts); this layer only refuses what
 * cannot even be converted, always naming the field.
 */
import type * as grpc from "@grpc/grpc-js";
import type { ServiceDefinition } from "@grpc/proto-loader";
import type { AddConsumerRequest__Output } from "../gen/lockbox/v1/AddConsumerRequest.js";
import type { AddConsumerResponse } from "../gen/lockbox/v1/AddConsumerResponse.js";
import type { ListConsumersRequest__Output } from "../gen/lockbox/v1/ListConsumersRequest.js";
import type { ListConsumersResponse } from "../gen/lockbox/v1/ListConsumersResponse.js";
import type { RemoveConsumerRequest__Output } from "../gen/lockbox/v1/RemoveConsumerRequest.js";
import type { RemoveConsumerResponse } from "../gen/lockbox/v1/RemoveConsumerResponse.js";
import type { CloneKeyRequest__Output } from "../gen/lockbox/v1/CloneKeyRequest.js";
import type { CloneKeyResponse } from "../gen/lockbox/v1/CloneKeyResponse.js";
import type { CreateGrantRequest__Output } from "../gen/lockbox/v1/CreateGrantRequest.js";
import type { CreateGrantResponse } from "../gen/lockbox/v1/CreateGrantResponse.js";
import type { CreateKeyRequest__Output } from "../gen/lockbox/v1/CreateKeyRequest.js";
import type { CreateKeyResponse } from "../gen/lockbox/v1/CreateKeyResponse.js";
import type { DeleteKeyRequest__Output } from "../gen/lockbox/v1/DeleteKeyRequest.js";
import type { DeleteKeyResponse } from "../gen/lockbox/v1/DeleteKeyResponse.js";
import type { GetKeyMetadataRequest__Output } from "../gen/lockbox/v1/GetKeyMetadataRequest.js";
import type { GetKeyMetadataResponse } from "../gen/lockbox/v1/GetKeyMetadataResponse.js";
import type { GetKeyRequest__Output } from "../gen/lockbox/v1/GetKeyRequest.js";
import type { GetKeyResponse } from "../gen/lockbox/v1/GetKeyResponse.js";
import type { ImportKeyRequest__Output } from "../gen/lockbox/v1/ImportKeyRequest.js";
import type { ImportKeyResponse } from "../gen/lockbox/v1/ImportKeyResponse.js";
import type { ListKeysRequest__Output } from "../gen/lockbox/v1/ListKeysRequest.js";
import type { ListKeysResponse } from "../gen/lockbox/v1/ListKeysResponse.js";
import type { RekeyCloneRequest__Output } from "../gen/lockbox/v1/RekeyCloneRequest.js";
import type { RekeyCloneResponse } from "../gen/lockbox/v1/RekeyCloneResponse.js";
import type { RevokeGrantRequest__Output } from "../gen/lockbox/v1/RevokeGrantRequest.js";
import type { RevokeGrantResponse } from "../gen/lockbox/v1/RevokeGrantResponse.js";
import type * as model from "../keys/key-model.js";
import type { Caller } from "../identity/caller.js";
import { type Committing, type EdgeContext, type Operation, auditedUnary } from "./audited-unary.js";
import { type KeyCallBatchOptions, keyCallBatch } from "./key-call-batch.js";
import {
  algorithmFromWire,
  boolFromWire,
  bytesFromWire,
  consumerToWire,
  grantToWire,
  keyMetaToWire,
  optionalAlgorithmFromWire,
  optionalTimestampFromWire,
  secretTypeFromWire,
  stringFromWire,
  timestampFromWire,
  uint32FromWire,
} from "./wire-mapping.js";

/** The key service as the edge uses it (src/keys/key-service.ts implements it). */
export interface KeyServiceApi {
  createKey(
    caller: Caller,
    req: model.CreateKeyRequest,
    onCreate?: model.CreateListener,
  ): Promise<model.KeyMeta>;
  importKey(
    caller: Caller,
    req: model.ImportKeyRequest,
    onCreate?: model.CreateListener,
  ): Promise<model.KeyMeta>;
  getKey(caller: Caller, req: model.KeyIdRequest): Promise<model.GetKeyResponse>;
  getKeyMetadata(caller: Caller, req: model.KeyIdRequest): Promise<model.KeyMeta>;
  listKeys(caller: Caller, req: model.ListKeysRequest): Promise<model.ListKeysResponse>;
  deleteKey(caller: Caller, req: model.DeleteKeyRequest): Promise<model.KeyMeta>;
  cloneKey(
    caller: Caller,
    req: model.CloneKeyRequest,
    onCreate?: model.CreateListener,
  ): Promise<model.KeyMeta>;
  rekeyClone(
    caller: Caller,
    req: model.CloneKeyRequest,
    onCreate?: model.CreateListener,
  ): Promise<model.KeyMeta>;
  createGrant(caller: Caller, req: model.CreateGrantRequest): Promise<model.Grant>;
  revokeGrant(caller: Caller, req: model.RevokeGrantRequest): Promise<model.Grant>;
  addConsumer(caller: Caller, req: model.ConsumerRequest): Promise<model.ConsumersResponse>;
  removeConsumer(caller: Caller, req: model.ConsumerRequest): Promise<model.ConsumersResponse>;
  listConsumers(caller: Caller, req: model.KeyConsumersRequest): Promise<model.ConsumersResponse>;
}

/** "" on the wire means "no client request id". */
const optionalString = (field: string, value: unknown): string | undefined => {
  const s = stringFromWire(field, value);
  return s === "" ? undefined : s;
};

const keyFacts = (meta: model.KeyMeta) => ({ keyId: meta.id, project: meta.project });
/** The listener that passes a create's new key to the pipeline, which starts its audit record then. */
const announceTo =
  (committing: Committing): model.CreateListener =>
  (key) =>
    committing({ keyId: key.id, project: key.project });
const idFacts = (req: { id?: unknown }) => ({ keyId: req.id as string });

/** A KeyService unary method as the call pipeline runs it, whichever way it came (unary or batched). */
// The table holds operations of different request and response types; each is reached by its name.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type KeyOperation = Operation<any, any>;

/** KeyService's unary methods by name ("CreateKey"), as call pipeline operations. */
export function keyServiceOperations(keys: KeyServiceApi): Readonly<Record<string, KeyOperation>> {
  const createKey: Operation<CreateKeyRequest__Output, CreateKeyResponse> = {
    name: "CreateKey",
    adminOnly: false,
    requestFacts: (req) => ({ project: req.project }),
    async run(caller, req, committing) {
      const meta = await keys.createKey(
        caller,
        {
          project: stringFromWire("project", req.project),
          scope: stringFromWire("scope", req.scope),
          name: stringFromWire("name", req.name),
          algorithm: algorithmFromWire(req.algorithm),
          bitLength: uint32FromWire("bit_length", req.bit_length),
          expiresAt: optionalTimestampFromWire("expires_at", req.expires_at),
          clientRequestId: optionalString("client_request_id", req.client_request_id),
        },
        announceTo(committing),
      );
      return { response: { key: keyMetaToWire(meta) }, facts: keyFacts(meta) };
    },
  };

  const importKey: Operation<ImportKeyRequest__Output, ImportKeyResponse> = {
    name: "ImportKey",
    adminOnly: false,
    requestFacts: (req) => ({ project: req.project }),
    async run(caller, req, committing) {
      try {
        const meta = await keys.importKey(
          caller,
          {
            project: stringFromWire("project", req.project),
            scope: stringFromWire("scope", req.scope),
            name: stringFromWire("name", req.name),
            secretType: secretTypeFromWire(req.secret_type),
            algorithm: optionalAlgorithmFromWire(req.algorithm),
            bitLength: uint32FromWire("bit_length", req.bit_length),
            material: bytesFromWire("material", req.material),
            expiresAt: optionalTimestampFromWire("expires_at", req.expires_at),
            clientRequestId: optionalString("client_request_id", req.client_request_id),
          },
          announceTo(committing),
        );
        return { response: { key: keyMetaToWire(meta) }, facts: keyFacts(meta) };
      } finally {
        // The decoded request holds plaintext key material (a view of the received message):
        // wrapped or refused, it is no longer needed, so zero it now rather than at GC.
        if (req.material instanceof Uint8Array) req.material.fill(0);
      }
    },
  };

  const getKey: Operation<GetKeyRequest__Output, GetKeyResponse> = {
    name: "GetKey",
    adminOnly: false,
    requestFacts: idFacts,
    async run(caller, req) {
      const got = await keys.getKey(caller, { id: stringFromWire("id", req.id) });
      // The key service hands over its copy to us; keep one copy (the
      // response's), and zero the other now rather than at garbage collection.
      // Buffer.alloc, not Buffer.from: small Buffer.from copies go into Node's
      // shared allocation pool, which allocUnsafe later hands out unzeroed.
      const material = Buffer.alloc(got.material.length);
      material.set(got.material);
      got.material.fill(0);
      return {
        response: { key: keyMetaToWire(got.key), material },
        facts: keyFacts(got.key),
      };
    },
  };

  const getKeyMetadata: Operation<GetKeyMetadataRequest__Output, GetKeyMetadataResponse> = {
    name: "GetKeyMetadata",
    adminOnly: false,
    requestFacts: idFacts,
    async run(caller, req) {
      const meta = await keys.getKeyMetadata(caller, { id: stringFromWire("id", req.id) });
      return { response: { key: keyMetaToWire(meta) }, facts: keyFacts(meta) };
    },
  };

  const listKeys: Operation<ListKeysRequest__Output, ListKeysResponse> = {
    name: "ListKeys",
    adminOnly: false,
    requestFacts: (req) => ({ project: req.project }),
    async run(caller, req) {
      const page = await keys.listKeys(caller, {
        project: stringFromWire("project", req.project),
        scope: stringFromWire("scope", req.scope),
        pageSize: uint32FromWire("page_size", req.page_size),
        pageToken: stringFromWire("page_token", req.page_token),
      });
      return { response: { keys: page.keys.map(keyMetaToWire), next_page_token: page.nextPageToken } };
    },
  };

  const deleteKey: Operation<DeleteKeyRequest__Output, DeleteKeyResponse> = {
    name: "DeleteKey",
    adminOnly: false,
    requestFacts: idFacts,
    async run(caller, req) {
      const meta = await keys.deleteKey(caller, {
        id: stringFromWire("id", req.id),
        force: boolFromWire("force", req.force),
      });
      return { response: { key: keyMetaToWire(meta) }, facts: keyFacts(meta) };
    },
  };

  const cloneLike = (
    name: "CloneKey" | "RekeyClone",
    call: (
      caller: Caller,
      req: model.CloneKeyRequest,
      onCreate: model.CreateListener,
    ) => Promise<model.KeyMeta>,
  ): Operation<
    CloneKeyRequest__Output | RekeyCloneRequest__Output,
    CloneKeyResponse | RekeyCloneResponse
  > => ({
    name,
    adminOnly: false,
    requestFacts: idFacts,
    async run(caller, req, committing) {
      const meta = await call(
        caller,
        {
          id: stringFromWire("id", req.id),
          name: stringFromWire("name", req.name),
          clientRequestId: optionalString("client_request_id", req.client_request_id),
        },
        announceTo(committing),
      );
      // The audit line names the new key; the parent is in its metadata.
      return { response: { key: keyMetaToWire(meta) }, facts: keyFacts(meta) };
    },
  });

  const createGrant: Operation<CreateGrantRequest__Output, CreateGrantResponse> = {
    name: "CreateGrant",
    adminOnly: false,
    requestFacts: (req) => ({ keyId: req.key_id }),
    async run(caller, req) {
      const grant = await keys.createGrant(caller, {
        keyId: stringFromWire("key_id", req.key_id),
        grantee: stringFromWire("grantee", req.grantee),
        expiresAt: timestampFromWire("expires_at", req.expires_at),
      });
      return { response: { grant: grantToWire(grant) }, facts: { keyId: grant.keyId } };
    },
  };

  const revokeGrant: Operation<RevokeGrantRequest__Output, RevokeGrantResponse> = {
    name: "RevokeGrant",
    adminOnly: false,
    requestFacts: () => ({}),
    async run(caller, req) {
      const grant = await keys.revokeGrant(caller, { grantId: stringFromWire("grant_id", req.grant_id) });
      return { response: { grant: grantToWire(grant) }, facts: { keyId: grant.keyId } };
    },
  };

  const consumerRequest = (req: AddConsumerRequest__Output | RemoveConsumerRequest__Output) => ({
    keyId: stringFromWire("key_id", req.key_id),
    service: stringFromWire("service", req.service),
    resourceType: stringFromWire("resource_type", req.resource_type),
    resourceId: stringFromWire("resource_id", req.resource_id),
  });
  const keyIdFacts = (req: { key_id?: unknown }) => ({ keyId: req.key_id as string });

  const addConsumer: Operation<AddConsumerRequest__Output, AddConsumerResponse> = {
    name: "AddConsumer",
    adminOnly: false,
    requestFacts: keyIdFacts,
    async run(caller, req) {
      const res = await keys.addConsumer(caller, consumerRequest(req));
      return {
        response: {
          key: keyMetaToWire(res.key),
          consumers: res.consumers.map(consumerToWire),
          added: res.changed,
        },
        facts: keyFacts(res.key),
      };
    },
  };

  const removeConsumer: Operation<RemoveConsumerRequest__Output, RemoveConsumerResponse> = {
    name: "RemoveConsumer",
    adminOnly: false,
    requestFacts: keyIdFacts,
    async run(caller, req) {
      const res = await keys.removeConsumer(caller, consumerRequest(req));
      return {
        response: {
          key: keyMetaToWire(res.key),
          consumers: res.consumers.map(consumerToWire),
          removed: res.changed,
        },
        facts: keyFacts(res.key),
      };
    },
  };

  const listConsumers: Operation<ListConsumersRequest__Output, ListConsumersResponse> = {
    name: "ListConsumers",
    adminOnly: false,
    requestFacts: keyIdFacts,
    async run(caller, req) {
      const res = await keys.listConsumers(caller, { keyId: stringFromWire("key_id", req.key_id) });
      return {
        response: { key: keyMetaToWire(res.key), consumers: res.consumers.map(consumerToWire) },
        facts: keyFacts(res.key),
      };
    },
  };

  return {
    CreateKey: createKey,
    ImportKey: importKey,
    GetKey: getKey,
    GetKeyMetadata: getKeyMetadata,
    ListKeys: listKeys,
    DeleteKey: deleteKey,
    CloneKey: cloneLike("CloneKey", (c, r, l) => keys.cloneKey(c, r, l)),
    RekeyClone: cloneLike("RekeyClone", (c, r, l) => keys.rekeyClone(c, r, l)),
    CreateGrant: createGrant,
    RevokeGrant: revokeGrant,
    AddConsumer: addConsumer,
    RemoveConsumer: removeConsumer,
    ListConsumers: listConsumers,
  };
}

/**
 * KeyService for grpc-js: each unary method through auditedUnary, and Batch (key-call-batch.ts)
 * running the same operations. `service` is KeyService's definition from the proto (each method's
 * declared idempotency); `batch` what Batch needs beside it.
 */
export function keyServiceHandlers(
  keys: KeyServiceApi,
  ctx: EdgeContext,
  service: ServiceDefinition,
  batch: KeyCallBatchOptions,
): grpc.UntypedServiceImplementation {
  const operations = keyServiceOperations(keys);
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const [name, op] of Object.entries(operations)) {
    const method = service[name];
    if (method === undefined) throw new Error(`KeyService has no method ${name} in the proto`);
    handlers[name] = auditedUnary(op, ctx, method);
  }
  handlers.Batch = keyCallBatch(operations, ctx, service, batch);
  return handlers;
}
