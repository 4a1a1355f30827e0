import * as grpc from "@grpc/grpc-js";
import test from "ava";
import { type LockboxErrorCode, LockboxError, invalidArgument } from "../../src/errors.js";
import {
  INTERNAL_ERROR_MESSAGE,
  statusName,
  toGrpcStatus,
  toServiceError,
} from "../../src/server/grpc-status.js";

const TABLE: [LockboxErrorCode, grpc.status][] = [
  ["INVALID_ARGUMENT", grpc.status.INVALID_ARGUMENT],
  ["NOT_FOUND", grpc.status.NOT_FOUND],
  ["ALREADY_EXISTS", grpc.status.ALREADY_EXISTS],
  ["PERMISSION_DENIED", grpc.status.PERMISSION_DENIED],
  ["UNAUTHENTICATED", grpc.status.UNAUTHENTICATED],
  ["FAILED_PRECONDITION", grpc.status.FAILED_PRECONDITION],
  ["UNAVAILABLE", grpc.status.UNAVAILABLE],
  ["RESOURCE_EXHAUSTED", grpc.status.RESOURCE_EXHAUSTED],
  ["DATA_LOSS", grpc.status.DATA_LOSS],
];

for (const [code, expected] of TABLE) {
  test(`LockboxError ${code} maps to gRPC ${grpc.status[expected]} with its message`, (t) => {
    const status = toGrpcStatus(new LockboxError(code, `something about ${code}`));
    t.is(status.code, expected);
    t.is(status.details, `something about ${code}`);
    t.is(statusName(status.code), grpc.status[expected]);
  });
}

test("INVALID_ARGUMENT keeps the field, also as the lockbox-field trailer", (t) => {
  const status = toGrpcStatus(invalidArgument("bit_length", "must be 128 or 256"));
  t.deepEqual(status, {
    code: grpc.status.INVALID_ARGUMENT,
    details: "bit_length: must be 128 or 256",
    field: "bit_length",
  });
  const err = toServiceError(status);
  t.is(err.code, grpc.status.INVALID_ARGUMENT);
  t.deepEqual(err.metadata?.get("lockbox-field"), ["bit_length"]);
});

test("INTERNAL and unknown errors reach the client only as a generic INTERNAL", (t) => {
  const secret = "key bytes 00112233 and a stack";
  for (const err of [
    new LockboxError("INTERNAL", secret),
    new Error(secret),
    new TypeError(secret),
    secret,
    undefined,
    null,
    { code: "NOT_FOUND", message: secret }, // looks like a LockboxError but is not one
  ]) {
    const status = toGrpcStatus(err);
    t.is(status.code, grpc.status.INTERNAL);
    t.is(status.details, INTERNAL_ERROR_MESSAGE);
    t.false(JSON.stringify(status).includes("00112233"));
  }
});

test("an unknown LockboxError code is INTERNAL, not passed through", (t) => {
  const forged = new LockboxError("NOPE" as LockboxErrorCode, "x");
  t.is(toGrpcStatus(forged).code, grpc.status.INTERNAL);
});
