/**
 * `lockbox tpm info | ek | quote | verify`: inspect a TPM and collect what
 * enrollment needs (EK certificate and public key, AK name, PCR values), and
 * check a quote the way a lockbox verifier does (DESIGN.md §5).
 *
 * The TPM is `--tpm swtpm:HOST:PORT` (a swtpm data port) or
 * `--tpm device:/dev/tpmrm0` (the kernel resource manager, the default).
 */
import { readFile } from "node:fs/promises";
import type { CliCommand } from "../command.js";
import { EXIT_FAILURE, EXIT_OK } from "../command.js";
import { describeHostPort, parseHostPort } from "../../net/host-port.js";
import {
  type OptionSpec,
  type ParsedArgs,
  UsageError,
  boolFlag,
  parseCommandArgs,
  printJson,
  requiredFlag,
  runGuarded,
  stringFlag,
} from "../client-options.js";
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

const TPM_HELP = [
  "  --tpm SPEC             swtpm:HOST:PORT or device:PATH   [$LOCKBOX_TPM, default device:/dev/tpmrm0]",
  "  --json                 print one JSON line",
  "  -h, --help             show this help",
].join("\n");

const USAGES: Record<string, string> = {
  tpm: [
    "usage: lockbox tpm <info|ek|quote|verify> [options]",
    "",
    "  info     manufacturer, firmware and PCR banks of a TPM",
    "  ek       the EK certificate and public key; with --ca, check its chain",
    "  quote    an AK name, PCR values and a quote over them, as JSON for `verify`",
    "  verify   check a quote JSON against an AK public key, a nonce and a PCR policy",
    "",
    "Run `lockbox tpm <subcommand> --help` for its options.",
  ].join("\n"),
  info: ["usage: lockbox tpm info [--tpm SPEC] [--json]", "", "options:", TPM_HELP].join("\n"),
  ek: [
    "usage: lockbox tpm ek [--tpm SPEC] [--ca FILE]... [--json]",
    "",
    "Prints the RSA EK certificate (PEM), the EK public area and name. With --ca (PEM or DER",
    "files holding the manufacturer's root and intermediate certificates) it also verifies the",
    "certificate chain and exits 1 if it does not verify.",
    "",
    "options:",
    "  --ca FILE              a CA certificate file (repeatable)",
    TPM_HELP,
  ].join("\n"),
  quote: [
    "usage: lockbox tpm quote --nonce HEX [--pcrs sha256:0,1,2,3,7] [--ak ecc|rsa] [--tpm SPEC]",
    "",
    "Creates the AK (a primary in the endorsement hierarchy), reads the PCRs and quotes them with",
    "the nonce as extraData. Prints the quote JSON that `lockbox tpm verify --quote` reads.",
    "",
    "options:",
    "  --nonce HEX            1..64 bytes of qualifying data (required; a verifier wants >= 16)",
    "  --pcrs SEL             PCR selection, e.g. sha256:0,1,2,3,7 (default)",
    "  --ak ecc|rsa           AK algorithm (default ecc: P-256, ECDSA-SHA256)",
    TPM_HELP,
  ].join("\n"),
  verify: [
    "usage: lockbox tpm verify --quote FILE --ak-public FILE --nonce HEX --policy FILE [--previous FILE] [--json]",
    "",
    "Verifies a quote JSON in the verifier's fixed order: policy, signature (scheme, hash and",
    "RSA-PSS salt as pinned), attest (magic, type, signer), nonce (at least 16 bytes), PCR digest,",
    "PCR policy, clock (`safe` set; with --previous, newer than an earlier quote), firmware",
    "version. Exits 0 if it verifies, 1 otherwise, printing each failure's check, code and",
    "details, and the checks not run after an early stop. Needs no TPM.",
    "",
    "options:",
    "  --quote FILE           the quote JSON (from `lockbox tpm quote`)",
    "  --ak-public FILE       the AK's TPMT_PUBLIC as hex, as enrolled (not taken from the quote)",
    "  --ak-parent-qn HEX     the AK's parent qualified name (default: endorsement hierarchy)",
    "  --nonce HEX            the nonce the quote must carry",
    "  --policy FILE          the quote policy: approved PCR values and the pins, e.g.",
    '                         {"pcrs": {"sha256": {"0": "<hex>", "7": ["<hex>", "<hex>"]}},',
    '                          "hashAlg": "sha256", "signatureScheme": "ecdsa" | "rsassa" | "rsapss",',
    '                          "rsaPssSaltBytes": 32 (rsapss only), "firmwareVersionMin": "20191023.00000000"}',
    "                         (firmware as `lockbox tpm info` prints it)",
    "  --previous FILE        an earlier accepted quote JSON from the same TPM",
    "  --json                 print one JSON line: {ok, ...} or {ok: false, failures, notRun}",
    "  -h, --help             show this help",
  ].join("\n"),
};

const TPM_OPTIONS = {
  tpm: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies OptionSpec;

const SUBCOMMANDS: Record<string, { options: OptionSpec; run(args: ParsedArgs): Promise<number> }> = {
  info: { options: TPM_OPTIONS, run: runInfo },
  ek: { options: { ...TPM_OPTIONS, ca: { type: "string", multiple: true } }, run: runEk },
  quote: {
    options: { ...TPM_OPTIONS, nonce: { type: "string" }, pcrs: { type: "string" }, ak: { type: "string" } },
    run: runQuote,
  },
  verify: {
    options: {
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
      quote: { type: "string" },
      "ak-public": { type: "string" },
      "ak-parent-qn": { type: "string" },
      nonce: { type: "string" },
      policy: { type: "string" },
      previous: { type: "string" },
    },
    run: runVerify,
  },
};

export const command: CliCommand = {
  name: "tpm",
  summary: "inspect a TPM: info, EK, quote, verify",
  run(argv) {
    const [sub, ...rest] = argv;
    if (sub === undefined || sub === "--help" || sub === "-h" || sub === "help") {
      process.stdout.write(USAGES.tpm + "\n");
      return Promise.resolve(sub === undefined ? 2 : EXIT_OK);
    }
    const entry = SUBCOMMANDS[sub];
    if (entry === undefined) {
      process.stderr.write(`lockbox tpm: unknown subcommand '${sub}'\n\n${USAGES.tpm}\n`);
      return Promise.resolve(2);
    }
    const usage = USAGES[sub]!;
    return runGuarded(`lockbox tpm ${sub}`, usage, async () => {
      const args = parseCommandArgs(rest, entry.options, 0);
      if (boolFlag(args, "help")) {
        process.stdout.write(usage + "\n");
        return EXIT_OK;
      }
      try {
        return await entry.run(args);
      } catch (err) {
        // Malformed user input found deep inside (a PCR selection, a policy file) is a usage error.
        if (err instanceof PcrFormatError) throw new UsageError(err.message);
        throw err;
      }
    });
  },
};

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
  if (boolFlag(args, "json")) printJson(info);
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
  if (boolFlag(args, "json")) printJson(out);
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
  const akAlg = stringFlag(args, "ak") ?? "ecc";
  if (akAlg !== "ecc" && akAlg !== "rsa") throw new UsageError("--ak must be ecc or rsa", "--ak");
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
  if (boolFlag(args, "json")) printJson(out);
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
  if (boolFlag(args, "json")) printJson(out);
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
