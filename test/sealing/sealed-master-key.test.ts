/**
 * The CMK sealed to a real swtpm: it unseals after the simulator is killed and
 * restarted; it stays sealed, with CMK_PCRS_CHANGED, once a PCR of its policy
 * was extended; another TPM is refused by its storage root key
 * (CMK_SRK_MISMATCH); a damaged or edited file is CMK_SEALED_FILE_DAMAGED,
 * never a crash; and the CMK never crosses the TPM transport in clear.
 */
import test from "ava";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Barrier } from "../../src/crypto/barrier.js";
import { envelopeEpoch } from "../../src/crypto/envelope.js";
import { Keyring } from "../../src/crypto/keyring.js";
import { isMasterKeyError, type MasterKeyError } from "../../src/crypto/master-key-error.js";
import { PeerTpm } from "../../src/sealing/peer-tpm.js";
import {
  decodeSealedMasterKey,
  encodeSealedMasterKey,
  readSealedMasterKeyFile,
  sealMasterKey,
  sealMasterKeys,
  sha256Pcrs,
  unsealMasterKey,
  unsealMasterKeys,
  writeSealedMasterKeyFile,
} from "../../src/sealing/sealed-master-key.js";
import { parseTpmAddress } from "../../src/sealing/tpm-address.js";
import { TpmMasterKeyProvider } from "../../src/sealing/tpm-master-key-provider.js";
import { Tpm } from "../../tpm/client/tpm.js";
import { TpmtHa } from "../../tpm/spec/basic.js";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { RecordingTransport } from "../../tpm/transport/recording-transport.js";
import { TcpTransport } from "../../tpm/transport/tcp-transport.js";
import { startRestartableSwtpm, type RestartableSwtpm } from "../tpm/restartable-swtpm.js";

const PCRS = sha256Pcrs([0, 1, 2, 3, 7]);

async function withTpm<T>(s: RestartableSwtpm, fn: (tpm: Tpm) => Promise<T>): Promise<T> {
  const tpm = await s.connect();
  try {
    return await fn(tpm);
  } finally {
    await tpm.close();
  }
}

async function sealed(s: RestartableSwtpm, clusterId = randomUUID(), epoch = 1) {
  const cmk = new Uint8Array(randomBytes(32));
  const bytes = await withTpm(s, (tpm) => sealMasterKey(tpm, { cmk, epoch, clusterId, pcrs: PCRS }));
  return { cmk, bytes, clusterId };
}

test("a sealed CMK unseals from its swtpm after the simulator was killed with SIGKILL and restarted, through the provider", async (t) => {
  const s = await startRestartableSwtpm(t);
  const { cmk, bytes, clusterId } = await sealed(s);
  const dir = await mkdtemp(join(tmpdir(), "lockbox-sealed-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, "master-key.sealed");
  await writeSealedMasterKeyFile(file, bytes);
  t.is((await stat(file)).mode & 0o777, 0o600);
  await t.throwsAsync(writeSealedMasterKeyFile(file, bytes), { code: "EEXIST" });

  await s.stop("SIGKILL");
  await s.start();
  const provider = new TpmMasterKeyProvider({
    tpm: new PeerTpm(parseTpmAddress(s.spec)!),
    sealedFile: file,
    clusterId,
  });
  const got = await provider.load();
  t.is(got.epoch, 1);
  t.deepEqual(Buffer.from(got.key), Buffer.from(cmk));
  t.is(provider.describe().protector, "tpm");
  t.false(provider.describe().insecure);
});

test("the CMK never crosses the TPM transport in clear, sealing or unsealing", async (t) => {
  const s = await startRestartableSwtpm(t);
  const recorder = new RecordingTransport(await TcpTransport.connect({ host: "127.0.0.1", port: s.port }));
  const tpm = new Tpm(recorder);
  try {
    const cmk = new Uint8Array(randomBytes(32));
    const clusterId = randomUUID();
    const bytes = await sealMasterKey(tpm, { cmk, epoch: 2, clusterId, pcrs: PCRS });
    const got = await unsealMasterKey(tpm, bytes, { clusterId, source: "test" });
    t.deepEqual(Buffer.from(got.key), Buffer.from(cmk));
    const needle = Buffer.from(cmk);
    t.true(recorder.exchanges().length > 5);
    for (const e of recorder.exchanges()) {
      t.false(Buffer.from(e.command).includes(needle), "a command carries the CMK in clear");
      t.false(
        Buffer.from(e.response ?? new Uint8Array(0)).includes(needle),
        "a response carries the CMK in clear",
      );
    }
    t.false(Buffer.from(bytes).includes(needle), "the sealed file does not hold the CMK in clear");
  } finally {
    await tpm.close();
  }
});

test("after a PCR of the policy was extended the CMK stays sealed with CMK_PCRS_CHANGED (attest again)", async (t) => {
  const s = await startRestartableSwtpm(t);
  const { bytes, clusterId } = await sealed(s);
  await withTpm(s, (tpm) =>
    tpm.pcrExtend(7, [new TpmtHa(TPM_ALG_ID.SHA256, new Uint8Array(randomBytes(32)))]),
  );
  const err = await t.throwsAsync(
    withTpm(s, (tpm) => unsealMasterKey(tpm, bytes, { clusterId, source: "f" })),
  );
  t.true(isMasterKeyError(err, "CMK_PCRS_CHANGED"), String(err));
  t.is((err as MasterKeyError).code, "FAILED_PRECONDITION");
  t.regex(err!.message, /attest again/);
  // A PCR outside the policy changes nothing.
  const other = await sealed(s);
  await withTpm(s, (tpm) => tpm.pcrExtend(16, [new TpmtHa(TPM_ALG_ID.SHA256, new Uint8Array(32))]));
  await t.notThrowsAsync(
    withTpm(s, (tpm) => unsealMasterKey(tpm, other.bytes, { clusterId: other.clusterId, source: "f" })),
  );
  t.deepEqual(await withTpm(s, (tpm) => tpm.getHandles(0x80000000)), [], "nothing left loaded");
});

test("a CMK sealed on one TPM is refused by another (its storage root key differs): CMK_SRK_MISMATCH", async (t) => {
  const a = await startRestartableSwtpm(t);
  const b = await startRestartableSwtpm(t);
  const { bytes, clusterId } = await sealed(a);
  const err = await t.throwsAsync(
    withTpm(b, (tpm) => unsealMasterKey(tpm, bytes, { clusterId, source: "f" })),
  );
  t.true(isMasterKeyError(err, "CMK_SRK_MISMATCH"), String(err));
  t.regex(err!.message, /lockbox recover/);
  // And the same file still unseals on its own TPM.
  await t.notThrowsAsync(withTpm(a, (tpm) => unsealMasterKey(tpm, bytes, { clusterId, source: "f" })));
});

test("a damaged sealed file is CMK_SEALED_FILE_DAMAGED at every byte, before the TPM is asked; an edited header fails the check value", async (t) => {
  const s = await startRestartableSwtpm(t);
  const { bytes, clusterId } = await sealed(s, randomUUID(), 4);
  for (let i = 0; i < bytes.length; i++) {
    const copy = new Uint8Array(bytes);
    copy[i]! ^= 0x01 << (i % 8);
    const err = t.throws(() => decodeSealedMasterKey(copy, "f"));
    if (!isMasterKeyError(err, "CMK_SEALED_FILE_DAMAGED")) t.fail(`byte ${i}: ${String(err)}`);
  }
  for (const cut of [0, 5, 14, bytes.length - 1]) {
    t.true(
      isMasterKeyError(
        t.throws(() => decodeSealedMasterKey(bytes.subarray(0, cut), "f")),
        "CMK_SEALED_FILE_DAMAGED",
      ),
    );
  }
  const longer = new Uint8Array([...bytes, 0]);
  t.true(
    isMasterKeyError(
      t.throws(() => decodeSealedMasterKey(longer, "f")),
      "CMK_SEALED_FILE_DAMAGED",
    ),
  );
  t.true(
    isMasterKeyError(
      t.throws(() => decodeSealedMasterKey(new Uint8Array(9000), "f")),
      "CMK_SEALED_FILE_DAMAGED",
    ),
  );

  // An edited epoch with a recomputed checksum: the TPM unseals, the check value refuses.
  const parsed = decodeSealedMasterKey(bytes, "f");
  const edited = encodeSealedMasterKey({ ...parsed, entries: [{ ...parsed.entries[0]!, epoch: 5 }] });
  const err = await t.throwsAsync(
    withTpm(s, (tpm) => unsealMasterKey(tpm, edited, { clusterId, source: "f" })),
  );
  t.true(isMasterKeyError(err, "CMK_SEALED_FILE_DAMAGED"), String(err));
  // Another cluster's file.
  const wrong = await t.throwsAsync(
    withTpm(s, (tpm) => unsealMasterKey(tpm, bytes, { clusterId: randomUUID(), source: "f" })),
  );
  t.true(isMasterKeyError(wrong, "CMK_WRONG_CLUSTER"));

  const dir = await mkdtemp(join(tmpdir(), "lockbox-sealed-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  t.true(
    isMasterKeyError(
      await t.throwsAsync(readSealedMasterKeyFile(join(dir, "none"))),
      "CMK_SEALED_FILE_MISSING",
    ),
  );
  t.true(isMasterKeyError(await t.throwsAsync(readSealedMasterKeyFile(dir)), "CMK_SEALED_FILE_DAMAGED"));
  await writeFile(join(dir, "big"), new Uint8Array(100_000));
  const big = await readSealedMasterKeyFile(join(dir, "big"));
  t.true(
    isMasterKeyError(
      t.throws(() => decodeSealedMasterKey(big, "big")),
      "CMK_SEALED_FILE_DAMAGED",
    ),
  );
});

test("the provider says CMK_TPM_FAILED when no TPM answers at its address", async (t) => {
  const s = await startRestartableSwtpm(t);
  const { bytes, clusterId } = await sealed(s);
  const dir = await mkdtemp(join(tmpdir(), "lockbox-sealed-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, "k");
  await writeSealedMasterKeyFile(file, bytes);
  await s.stop("SIGKILL");
  const provider = new TpmMasterKeyProvider({
    tpm: new PeerTpm(parseTpmAddress(s.spec)!),
    sealedFile: file,
    clusterId,
  });
  t.true(isMasterKeyError(await t.throwsAsync(provider.load()), "CMK_TPM_FAILED"));
});

test("a sealed file holds several epochs (a rotation's keyring): all unseal, the barrier holds them all and wraps under the newest", async (t) => {
  const s = await startRestartableSwtpm(t);
  const clusterId = randomUUID();
  const old = { epoch: 1, key: new Uint8Array(randomBytes(32)) };
  const next = { epoch: 2, key: new Uint8Array(randomBytes(32)) };
  const bytes = await withTpm(s, (tpm) =>
    sealMasterKeys(tpm, {
      keys: [next, old].map((k) => ({ ...k, key: new Uint8Array(k.key) })),
      clusterId,
      pcrs: PCRS,
    }),
  );
  const got = await withTpm(s, (tpm) => unsealMasterKeys(tpm, bytes, { clusterId, source: "f" }));
  t.deepEqual(
    got.map((k) => [k.epoch, Buffer.from(k.key).toString("hex")]),
    [old, next].map((k) => [k.epoch, Buffer.from(k.key).toString("hex")]),
  );
  const active = await withTpm(s, (tpm) => unsealMasterKey(tpm, bytes, { clusterId, source: "f" }));
  t.is(active.epoch, 2);

  const dir = await mkdtemp(join(tmpdir(), "lockbox-sealed-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, "k");
  await writeSealedMasterKeyFile(file, bytes);
  const provider = new TpmMasterKeyProvider({
    tpm: new PeerTpm(parseTpmAddress(s.spec)!),
    sealedFile: file,
    clusterId,
  });
  const barrier = new Barrier();
  await barrier.unsealWith(provider);
  t.is(barrier.activeEpoch, 2);
  const binding = { kind: "test", id: "x", attributes: {} };
  const underOld = new Barrier();
  underOld.unseal(Keyring.empty().withEpoch(1, old.key));
  const blob = underOld.wrap(Uint8Array.of(7), binding);
  t.deepEqual(barrier.unwrap(blob, binding), Uint8Array.of(7), "a blob of the old epoch still opens");
  t.is(envelopeEpoch(barrier.wrap(Uint8Array.of(8), binding)), 2, "new wraps use the newest epoch");

  // Re-sealed with the newest epoch only (the old one retired), replacing the file.
  await provider.reseal([{ epoch: 2, key: new Uint8Array(next.key) }], [0, 7]);
  t.deepEqual(
    (await provider.loadAll()).map((k) => k.epoch),
    [2],
  );
  await t.throwsAsync(
    withTpm(s, (tpm) => sealMasterKeys(tpm, { keys: [old, old], clusterId, pcrs: PCRS })),
    {
      instanceOf: RangeError,
    },
  );
  await t.throwsAsync(
    withTpm(s, (tpm) => sealMasterKeys(tpm, { keys: [], clusterId, pcrs: PCRS })),
    {
      instanceOf: RangeError,
    },
  );
});

test("a multi-epoch file with epochs out of order, or entries pinning two TPMs' storage root keys, is CMK_SEALED_FILE_DAMAGED", async (t) => {
  const a = await startRestartableSwtpm(t);
  const b = await startRestartableSwtpm(t);
  const clusterId = randomUUID();
  const one = decodeSealedMasterKey((await sealed(a, clusterId, 1)).bytes, "a");
  const two = decodeSealedMasterKey((await sealed(a, clusterId, 2)).bytes, "a");
  const other = decodeSealedMasterKey((await sealed(b, clusterId, 3)).bytes, "b");
  const file = (entries: typeof one.entries) => encodeSealedMasterKey({ clusterId, entries });
  t.notThrows(() => decodeSealedMasterKey(file([...one.entries, ...two.entries]), "ok"));
  for (const [what, entries] of [
    ["out of order", [...two.entries, ...one.entries]],
    ["twice", [...one.entries, ...one.entries]],
    ["two TPMs", [...one.entries, ...other.entries]],
  ] as const) {
    const err = t.throws(() => decodeSealedMasterKey(file(entries), what));
    t.true(isMasterKeyError(err, "CMK_SEALED_FILE_DAMAGED"), `${what}: ${String(err)}`);
  }
});

test("the provider waits, bounded, for a swtpm that starts just after the peer (as compose starts both at once)", async (t) => {
  const s = await startRestartableSwtpm(t);
  const { cmk, bytes, clusterId } = await sealed(s);
  const dir = await mkdtemp(join(tmpdir(), "lockbox-sealed-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, "k");
  await writeSealedMasterKeyFile(file, bytes);
  await s.stop("SIGTERM");
  const provider = new TpmMasterKeyProvider({
    tpm: new PeerTpm(parseTpmAddress(s.spec)!, { connectAttemptsMax: 50, connectRetryMs: 100 }),
    sealedFile: file,
    clusterId,
  });
  const loading = provider.load();
  await new Promise((r) => setTimeout(r, 300));
  await s.start();
  t.deepEqual(Buffer.from((await loading).key), Buffer.from(cmk));
});
