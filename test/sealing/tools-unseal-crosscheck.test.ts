/**
 * Our sealed CMK is a standard TPM object, cross-checked with tpm2-tools (an
 * independent implementation): the tools re-create the same storage root key
 * from the template (its name is the one pinned in the sealed file), load the
 * sealed object under it and unseal it with a PolicyPCR session to exactly
 * our CMK; after a PCR of the policy was extended the tools cannot unseal it
 * either, and our unseal says CMK_PCRS_CHANGED.
 */
import test from "ava";
import { randomBytes, randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import { isMasterKeyError } from "../../src/crypto/master-key-error.js";
import {
  decodeSealedMasterKey,
  sealMasterKey,
  sha256Pcrs,
  unsealMasterKey,
} from "../../src/sealing/sealed-master-key.js";
import { encode } from "../../tpm/marshal/writer.js";
import { Tpm2bPublic } from "../../tpm/spec/public.js";
import { startRestartableSwtpm } from "../tpm/restartable-swtpm.js";
import { ToolError, Tpm2Tools } from "../tpm/tpm2-tools.js";

test("tpm2-tools unseal our sealed CMK under the pinned SRK with a PolicyPCR session, and cannot after a PCR extend", async (t) => {
  const s = await startRestartableSwtpm(t);
  const clusterId = randomUUID();
  const cmk = new Uint8Array(randomBytes(32));
  let tpm = await s.connect();
  const bytes = await sealMasterKey(tpm, { cmk, epoch: 1, clusterId, pcrs: sha256Pcrs([0, 1, 2, 3, 7]) });
  await tpm.close();
  const entry = decodeSealedMasterKey(bytes, "f").entries[0]!;

  const tools = new Tpm2Tools(s.tcti, s.workDir);
  await fs.writeFile(
    tools.path("seal.priv"),
    encode((w) => w.tpm2b(entry.blob.outPrivate)),
  );
  await fs.writeFile(
    tools.path("seal.pub"),
    encode((w) => new Tpm2bPublic(entry.blob.outPublic).marshal(w)),
  );
  await tools.run("tpm2_createprimary", [
    ...["-C", "o", "-g", "sha256", "-G", "ecc256:null:aes128cfb", "-c", "srk.ctx"],
    ...["-a", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt"],
  ]);
  await tools.run("tpm2_readpublic", ["-c", "srk.ctx", "-n", "srk.name"]);
  await tools.flushAll(); // swtpm has no resource manager: srk.ctx is reloaded from its saved context
  t.deepEqual(
    new Uint8Array(await fs.readFile(tools.path("srk.name"))),
    entry.blob.srkName,
    "the tools' SRK from the same template has the pinned name",
  );
  const unsealWithTools = async (): Promise<Uint8Array> => {
    await tools.run("tpm2_load", ["-C", "srk.ctx", "-u", "seal.pub", "-r", "seal.priv", "-c", "seal.ctx"]);
    try {
      await tools.run("tpm2_unseal", ["-c", "seal.ctx", "-p", "pcr:sha256:0,1,2,3,7", "-o", "cmk.out"]);
      return new Uint8Array(await fs.readFile(tools.path("cmk.out")));
    } finally {
      await tools.run("tpm2_flushcontext", ["seal.ctx"]).catch(() => undefined);
      await tools.flushAll();
    }
  };
  t.deepEqual(Buffer.from(await unsealWithTools()), Buffer.from(cmk));

  await tools.extendPcr(7, randomBytes(32).toString("hex"));
  await tools.run("tpm2_createprimary", [
    ...["-C", "o", "-g", "sha256", "-G", "ecc256:null:aes128cfb", "-c", "srk.ctx"],
    ...["-a", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt"],
  ]);
  await tools.flushAll();
  const refused = await t.throwsAsync(unsealWithTools(), { instanceOf: ToolError });
  t.regex(refused!.stderr, /0x99d|policy/i, "refused by the PCR policy, not by something else");
  tpm = await s.connect();
  try {
    const err = await t.throwsAsync(unsealMasterKey(tpm, bytes, { clusterId, source: "f" }));
    t.true(isMasterKeyError(err, "CMK_PCRS_CHANGED"));
  } finally {
    await tpm.close();
  }
});
