/** config.json's masterKeySealing section: round-trips, and each wrong field is named. */
import test from "ava";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadPeerConfig, newPeerConfig, validatePeerConfig } from "../../src/config/peer-config.js";
import { isLockboxError } from "../../src/errors.js";

const good = {
  ...newPeerConfig({ peerId: "peer-1", listen: "127.0.0.1:7443" }),
  masterKeySealing: { protector: "tpm", tpm: "device:/dev/tpmrm0", sealedFile: "master-key.sealed" },
};

test("a config with masterKeySealing round-trips through config.json; without it there is none", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "lockbox-config-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "config.json"), JSON.stringify(good));
  t.deepEqual((await loadPeerConfig(dir)).masterKeySealing, good.masterKeySealing);
  t.false("masterKeySealing" in newPeerConfig({ peerId: "peer-1", listen: "127.0.0.1:7443" }));
});

test("each wrong masterKeySealing field is named", (t) => {
  const m = good.masterKeySealing;
  const cases: [string, unknown][] = [
    ["masterKeySealing", []],
    ["masterKeySealing", "tpm"],
    ["masterKeySealing.protector", { ...m, protector: "file" }],
    ["masterKeySealing.tpm", { ...m, tpm: "/dev/tpmrm0" }],
    ["masterKeySealing.tpm", { ...m, tpm: 7 }],
    ["masterKeySealing.sealedFile", { ...m, sealedFile: "" }],
    ["masterKeySealing.sealedFile", { ...m, sealedFile: "a\0b" }],
    ["masterKeySealing.extra", { ...m, extra: 1 }],
  ];
  for (const [field, value] of cases) {
    const err = t.throws(() => validatePeerConfig({ ...good, masterKeySealing: value }, "config.json"));
    t.true(isLockboxError(err, "FAILED_PRECONDITION"), field);
    t.is((err as { field?: string }).field, field);
  }
});
