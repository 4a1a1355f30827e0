import * as grpc from "@grpc/grpc-js";
import test from "ava";
import { KeyService } from "../../src/keys/key-service.js";
import type { ImportKeyRequest } from "../../src/keys/key-model.js";
import type { KeyServiceApi } from "../../src/server/key-service-handlers.js";
import { call, clientsFor, issue, startEdgeWith } from "./peer-fixture.js";

// ImportKey's request carries plaintext key material. Once the key service has wrapped it (or
// refused it), the edge must zero the decoded request's copy rather than leave it to the GC.
// The real key service runs behind a pass-through that only remembers the buffer it was handed.
test("ImportKey zeroes the request's material after the call, whether it succeeds or is refused", async (t) => {
  const seen: Uint8Array[] = [];
  const fixture = await startEdgeWith(t, ({ keys: real }) => ({
    keys: Object.assign(Object.create(real) as KeyService, {
      importKey(caller: Parameters<KeyServiceApi["importKey"]>[0], req: ImportKeyRequest) {
        seen.push(req.material);
        return real.importKey(caller, req);
      },
    }),
  }));
  const svc = clientsFor(t, fixture, await issue(fixture, "vol-host", "service", ["p1"]));
  const material = Buffer.alloc(32, 0xa7);
  const request = (project: string) => ({
    project,
    scope: "s",
    name: "n",
    algorithm: "KEY_ALGORITHM_AES",
    material,
  });

  const imported = await call(svc.keys, "ImportKey", request("p1"));
  if (!imported.ok) return t.fail(imported.error.message);
  const refused = await call(svc.keys, "ImportKey", request("p2")); // a project vol-host does not hold
  t.false(refused.ok);
  if (!refused.ok) t.is(refused.error.code, grpc.status.PERMISSION_DENIED);

  t.is(seen.length, 2);
  for (const buffer of seen) {
    t.is(buffer.length, 32);
    t.true(
      buffer.every((b) => b === 0),
      "the decoded request's material is zeroed",
    );
  }
  // Zeroing the request did not touch what was stored.
  const got = await call(svc.keys, "GetKey", { id: imported.value.key.id });
  if (!got.ok) return t.fail(got.error.message);
  t.deepEqual(Buffer.from(got.value.material as Buffer), material);
});
