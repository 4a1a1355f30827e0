/**
 * `lockbox tpm info | ek | quote | verify`: inspect a TPM and collect what
 * enrollment needs (EK certificate and public key, AK name, PCR values), and
 * check a quote the way a lockbox verifier does (DESIGN.md §5).
 *
 * The TPM is `--tpm swtpm:HOST:PORT` (a swtpm data port) or
 * `--tpm device:/dev/tpmrm0` (the kernel resource manager, the default).
 */
import { readFile } from "node:fs/promises";
import { defineCommand, type LeafDefinition, type OptionDefinition } from "../cli-definition.js";
import { EXIT_FAILURE, EXIT_OK } from "../command.js";
import { emitRecord, outputMode } from "../output.js";
import { describeHostPort, parseHostPort } from "../../net/host-port.js";
import { type ParsedArgs, UsageError, requiredFlag, stringFlag } from "../client-options.js";
import {
  Tpm,
  TPM_CAP,
  TPM_PT,
  TpmlPcrSelection,
  TpmsPcrSelection,
  createAk,
  encode,
  objectName,
  publicKeyFromTpmt,
  quote,
  withTransient,
} from "../../../tpm/index.js";
import {
  DeviceTransport,
  PcrFormatError,
  TcpTransport,
  type TpmTransport,
  bankName,
  type QuoteFailure,
  type QuotePolicy,
  clockOfAttest,
  firmwareVersionText,
  parseCertificates,
  parsePcrSelection,
  parseQuoteJson,
  quoteToJson,
  readEk,
  verifyEkCertificateChain,
  verifyQuote,
} from "../../../tpm/index-verify.js";

const TPM_OPTION: OptionDefinition = {
  flags: "--tpm <SPEC>",
  description: "swtpm:HOST:PORT or device:PATH [$LOCKBOX_TPM, default device:/dev/tpmrm0]",
};

/** Malformed input found deep inside (a PCR selection, a policy file) is a usage error. */
const usageOnPcrFormat =
  (run: (args: ParsedArgs) => Promise<number>) =>
  async (args: ParsedArgs): Promise<number> => {
    try {
      return await run(args);
    } catch (err) {
      if (err instanceof PcrFormatError) throw new UsageError(err.message);
      throw err;
    }
  };

const SUBCOMMANDS: LeafDefinition[] = [
  {
    name: "info",
    summary: "manufacturer, firmware and PCR banks of a TPM",
    options: [TPM_OPTION],
    output: true,
    run: runInfo,
  },
  {
    name: "ek",
    summary: "the EK certificate and public key; with --ca, check its chain",
    description:
      "Prints the RSA EK certificate (PEM), the EK public area and name. With --ca (PEM or DER\n" +
      "files holding the manufacturer's root and intermediate certificates) it also verifies the\n" +
      "certificate chain and exits 1 if it does not verify.",
    options: [
      { flags: "--ca <FILE>", description: "a CA certificate file (repeatable)", repeatable: true },
      TPM_OPTION,
    ],
    output: true,
    run: runEk,
  },
  {
    name: "quote",
    summary: "an AK name, PCR values and a quote over them, as JSON for `verify`",
    description:
      "Creates the AK (a primary in the endorsement hierarchy), reads the PCRs and quotes them with\n" +
      "the nonce as extraData. Prints the quote JSON that `lockbox tpm verify --quote` reads.",
    options: [
      {
        flags: "--nonce <HEX>",
        description: "1..64 bytes of qualifying data (a verifier wants >= 16)",
        required: true,
      },
      { flags: "--pcrs <SEL>", description: "PCR selection", default: "sha256:0,1,2,3,7" },
      {
        flags: "--ak <ALG>",
        description: "AK algorithm (ecc: P-256, ECDSA-SHA256)",
        choices: ["ecc", "rsa"],
        default: "ecc",
      },
      TPM_OPTION,
    ],
    output: true,
    run: usageOnPcrFormat(runQuote),
  },
  {
    name: "verify",
    summary: "check a quote JSON against an AK public key, a nonce and a PCR policy",
    description:
      "Verifies a quote JSON in the verifier's fixed order: policy, signature (scheme, hash and\n" +
      "RSA-PSS salt as pinned), attest (magic, type, signer), nonce (at least 16 bytes), PCR digest,\n" +
      "PCR policy, clock (`safe` set; with --previous, newer than an earlier quote), firmware\n" +
      "version. Exits 0 if it verifies, 1 otherwise, printing each failure's check, code and\n" +
      "details, and the checks not run after an early stop. Needs no TPM.\n\n" +
      "The policy file holds approved PCR values and the pins, e.g.\n" +
      '  {"pcrs": {"sha256": {"0": "<hex>", "7": ["<hex>", "<hex>"]}},\n' +
      '   "hashAlg": "sha256", "signatureScheme": "ecdsa" | "rsassa" | "rsapss",\n' +
      '   "rsaPssSaltBytes": 32 (rsapss only), "firmwareVersionMin": "20191023.00000000"}\n' +
      "(firmware as `lockbox tpm info` prints it).",
    options: [
      { flags: "--quote <FILE>", description: "the quote JSON (from `lockbox tpm quote`)", required: true },
      {
        flags: "--ak-public <FILE>",
        description: "the AK's TPMT_PUBLIC as hex, as enrolled (not taken from the quote)",
        required: true,
      },
      {
        flags: "--ak-parent-qn <HEX>",
        description: "the AK's parent qualified name (default: endorsement hierarchy)",
      },
      { flags: "--nonce <HEX>", description: "the nonce the quote must carry", required: true },
      { flags: "--policy <FILE>", description: "the quote policy (see above)", required: true },
      { flags: "--previous <FILE>", description: "an earlier accepted quote JSON from the same TPM" },
    ],
    output: true,
    run: usageOnPcrFormat(runVerify),
  },
];

export const command = defineCommand({
  name: "tpm",
  summary: "inspect a TPM: info, EK, quote, verify",
  subcommands: SUBCOMMANDS,
});

/** --json or --field: print the record (emitRecord picks which); otherwise the text below. */
const structured = (): boolean => outputMode().json || outputMode().field !== undefined;

/** Opens the transport named by --tpm (or $LOCKBOX_TPM), runs `fn`, always closes it. */
async function withTpm<T>(args: ParsedArgs, fn: (tpm: Tpm) => Promise<T>): Promise<T> {
  const spec = stringFlag(args, "tpm") ?? process.env.LOCKBOX_TPM ?? "device:/dev/tpmrm0";
  let transport: TpmTransport;
  if (spec.startsWith("swtpm:")) {
    const address = parseHostPort(spec.slice("swtpm:".length));
    if (address === undefined) {
      throw new UsageError(`--tpm swtpm: must be followed by ${describeHostPort()}, got '${spec}'`, "--tpm");
    }
    transport = await TcpTransport.connect(address);
  } else if (spec.startsWith("device:") && spec.length > "device:".length) {
    transport = await DeviceTransport.open({ path: spec.slice("device:".length) });
  } else {
    throw new UsageError(`--tpm must be swtpm:HOST:PORT or device:PATH, got '${spec}'`, "--tpm");
  }
  const tpm = new Tpm(transport);
  try {
    return await fn(tpm);
  } finally {
    await tpm.close();
  }
}

async function runInfo(args: ParsedArgs): Promise<number> {
  const info = await withTpm(args, async (tpm) => {
    const prop = async (p: number) => (await tpm.getProperty(p)) ?? 0;
    const manufacturer = ascii(await prop(TPM_PT.MANUFACTURER));
    const vendor = [
      TPM_PT.VENDOR_STRING_1,
      TPM_PT.VENDOR_STRING_2,
      TPM_PT.VENDOR_STRING_3,
      TPM_PT.VENDOR_STRING_4,
    ];
    const vendorString = (await Promise.all(vendor.map(prop))).map(ascii).join("").trim();
    const fw1 = await prop(TPM_PT.FIRMWARE_VERSION_1);
    const fw2 = await prop(TPM_PT.FIRMWARE_VERSION_2);
    const revision = await prop(TPM_PT.REVISION);
    const { capabilityData } = await tpm.getCapability(TPM_CAP.PCRS, 0, 16);
    const d = capabilityData.data;
    const banks =
      d.capability === TPM_CAP.PCRS
        ? d.assignedPcr.selections.map((s) => ({ bank: bankName(s.hash), pcrs: s.pcrs().length }))
        : [];
    return {
      manufacturer,
      vendorString,
      // Vendors encode firmware versions freely; hex shows the usual date-like forms (swtpm: 20191023).
      firmwareVersion: firmwareVersionText((BigInt(fw1 >>> 0) << 32n) | BigInt(fw2 >>> 0)),
      specRevision: (revision / 100).toFixed(2),
      pcrBanks: banks,
      activePcrBanks: banks.filter((b) => b.pcrs > 0).map((b) => b.bank),
    };
  });
  if (structured()) emitRecord(info, () => "");
  else {
    const rows: [string, string][] = [
      ["manufacturer", info.manufacturer],
      ["vendor", info.vendorString],
      ["firmware", info.firmwareVersion],
      ["spec revision", info.specRevision],
      ["PCR banks", info.pcrBanks.map((b) => `${b.bank} (${b.pcrs} PCRs)`).join(", ")],
    ];
    process.stdout.write(rows.map(([k, v]) => `${k.padEnd(14)} ${v}`).join("\n") + "\n");
  }
  return EXIT_OK;
}

async function runEk(args: ParsedArgs): Promise<number> {
  const caFiles = (args.values.ca as string[] | undefined) ?? [];
  const caCerts = (await Promise.all(caFiles.map((f) => readFile(f)))).flatMap((b) => parseCertificates(b));
  const ek = await withTpm(args, (tpm) => readEk(tpm));
  let chain: { verified: boolean; error?: string; errorCode?: string; subjects?: string[] } | undefined;
  if (caFiles.length > 0) {
    try {
      const certs = verifyEkCertificateChain(ek.certificate, caCerts);
      chain = { verified: true, subjects: certs.map((c) => c.subject) };
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      chain = {
        verified: false,
        errorCode: typeof code === "string" ? code : "error",
        error: String((err as Error).message),
      };
    }
  }
  const out = {
    certificatePem: ek.certificate.toString(),
    issuer: ek.certificate.issuer,
    subject: ek.certificate.subject,
    validTo: ek.certificate.validTo,
    ekPublic: hex(encode((w) => ek.ekPublic.marshal(w))),
    ekName: hex(ek.ekName),
    ekPem: publicKeyFromTpmt(ek.ekPublic).export({ type: "spki", format: "pem" }) as string,
    ...(chain === undefined ? {} : { chain }),
  };
  if (structured()) emitRecord(out, () => "");
  else {
    process.stdout.write(
      `${out.certificatePem.trimEnd()}\nEK name     ${out.ekName}\nEK public  ${out.ekPublic}\n`,
    );
    if (chain !== undefined) {
      process.stdout.write(
        chain.verified
          ? `chain      verified (${chain.subjects!.join(" <- ")})\n`
          : `chain      NOT VERIFIED: ${chain.errorCode}: ${chain.error}\n`,
      );
    }
  }
  return chain === undefined || chain.verified ? EXIT_OK : EXIT_FAILURE;
}

async function runQuote(args: ParsedArgs): Promise<number> {
  const nonce = hexArg(requiredFlag(args, "nonce"), "--nonce", 1, 64);
  const banks = parsePcrSelection(stringFlag(args, "pcrs") ?? "sha256:0,1,2,3,7");
  const akAlg = stringFlag(args, "ak") === "rsa" ? "rsa" : "ecc";
  const selection = new TpmlPcrSelection(banks.map((b) => TpmsPcrSelection.of(b.hashAlg, b.pcrs)));
  const out = await withTpm(args, (tpm) =>
    withTransient(
      tpm,
      () => createAk(tpm, akAlg),
      async (ak) => {
        const q = await quote(tpm, ak, { pcrs: selection, extraData: nonce });
        const values = (await tpm.pcrRead(selection)).values;
        return quoteToJson({
          akPublic: encode((w) => ak.publicArea.marshal(w)),
          akName: objectName(ak.publicArea),
          akPem: publicKeyFromTpmt(ak.publicArea).export({ type: "spki", format: "pem" }) as string,
          nonce,
          attest: q.attestBytes,
          signature: encode((w) => q.signature.marshal(w)),
          pcrValues: values.map((v) => ({ hashAlg: v.hash, pcr: v.pcr, value: v.digest })),
        });
      },
    ),
  );
  if (structured()) emitRecord(out, () => "");
  else process.stdout.write(JSON.stringify(out, null, 2) + "\n");
  return EXIT_OK;
}

async function runVerify(args: ParsedArgs): Promise<number> {
  const q = parseQuoteJson(await readJson(requiredFlag(args, "quote"), "--quote"));
  const akPublic = hexArg(
    (await readFile(requiredFlag(args, "ak-public"), "utf8")).trim(),
    "--ak-public",
    1,
    4096,
  );
  const nonce = hexArg(requiredFlag(args, "nonce"), "--nonce", 0, 64);
  // Checked by verifyQuote itself: a malformed or empty policy is a refusal with its own code.
  const policy = (await readJson(requiredFlag(args, "policy"), "--policy")) as QuotePolicy;
  const previousFile = stringFlag(args, "previous");
  const previous =
    previousFile === undefined
      ? undefined
      : clockOfAttest(parseQuoteJson(await readJson(previousFile, "--previous")).attest);
  const parentQn = stringFlag(args, "ak-parent-qn");
  const result = verifyQuote({
    attestBytes: q.attest,
    signature: q.signature,
    akPublic,
    ...(parentQn === undefined ? {} : { akParentQualifiedName: hexArg(parentQn, "--ak-parent-qn", 4, 68) }),
    expectedNonce: nonce,
    pcrValues: q.pcrValues,
    policy,
    ...(previous === undefined ? {} : { previous }),
  });
  const out = result.ok
    ? {
        ok: true,
        akName: hex(result.akName),
        clock: { ...result.clock, clock: result.clock.clock.toString() },
        firmwareVersion: firmwareVersionText(result.firmwareVersion),
        restartedSincePrevious: result.restartedSincePrevious,
      }
    : { ok: false, failures: result.failures, notRun: result.notRun };
  if (structured()) emitRecord(out, () => "");
  else if (result.ok) process.stdout.write(`quote verified (AK ${hex(result.akName)})\n`);
  else {
    const lines = ["quote REFUSED:", ...result.failures.map(failureLine)];
    if (result.notRun.length > 0) lines.push(`not run: ${result.notRun.join(", ")}`);
    process.stdout.write(lines.join("\n") + "\n");
  }
  return result.ok ? EXIT_OK : EXIT_FAILURE;
}

/** `  check  code  key=value ...`, with anything unprintable in a value escaped. */
function failureLine(f: QuoteFailure): string {
  const details = Object.entries(f.details).map(
    ([k, v]) => `${k}=${printable(Array.isArray(v) ? v.join(",") : String(v))}`,
  );
  const tag = f.recoverable ? " (recoverable)" : "";
  return `  ${f.check.padEnd(10)} ${f.code}${tag}${details.length > 0 ? "  " + details.join(" ") : ""}`;
}

function printable(s: string): string {
  return /^[\x21-\x7e]*$/.test(s)
    ? s
    : JSON.stringify(s).replace(
        /[\u007f-\uffff]/g,
        (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
      );
}

/** Bounds what a JSON argument file may cost to read. */
const JSON_FILE_BYTES_MAX = 1024 * 1024;

async function readJson(file: string, flag: string): Promise<unknown> {
  const text = await readFile(file, "utf8");
  if (text.length > JSON_FILE_BYTES_MAX)
    throw new UsageError(`${flag} file is larger than ${JSON_FILE_BYTES_MAX} bytes`, flag);
  try {
    return JSON.parse(text);
  } catch {
    throw new UsageError(`${flag} file ${file} is not JSON`, flag);
  }
}

function hexArg(value: string, flag: string, minBytes: number, maxBytes: number): Uint8Array {
  if (!/^([0-9a-fA-F]{2})*$/.test(value)) throw new UsageError(`${flag} must be hex`, flag);
  const bytes = new Uint8Array(Buffer.from(value, "hex"));
  if (bytes.length < minBytes || bytes.length > maxBytes) {
    throw new UsageError(`${flag} must be ${minBytes}..${maxBytes} bytes, got ${bytes.length}`, flag);
  }
  return bytes;
}

function ascii(v: number): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b.toString("latin1").replace(/[^\x20-\x7e]/g, "");
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}
