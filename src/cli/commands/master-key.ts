/**
 * `lockbox master-key rotate | status`: the cluster master key's epochs (src/controlplane/
 * master-key-rotation.ts). `rotate` starts a rotation on the peer it reaches (or resumes an unfinished
 * one) and follows it with progress lines on stderr until the old epoch is retired: the new epoch is
 * delivered to every member by attestation, activated, every project KEK re-wrapped, the old epoch
 * retired. The result (and only the result) goes to stdout, as text or one --json line.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { LockboxClient } from "../../client/index.js";
import { decodeRecoveryShare, recoveryShareFileName } from "../../crypto/recovery-share.js";
import { LockboxError } from "../../errors.js";
import { defineCommand } from "../cli-definition.js";
import { EXIT_OK } from "../command.js";
import { UsageError, clientFrom, connectionSettings, intFlag, stringFlag } from "../client-options.js";
import { emitList, emitRecord, writePrivateFile } from "../output.js";

interface EpochInfo {
  epoch: number;
  state: string;
  holders: string[];
  lacking: string[];
  project_keks: number;
  cluster_ca: boolean;
}

interface MasterKeyStatus {
  epochs: EpochInfo[];
  rotation: {
    running: boolean;
    epoch: number;
    phase: string;
    keks_rewrapped: number;
    keks_total: number;
    detail: string;
  } | null;
  peer_id: string;
  peer_active_epoch: number;
  peer_held_epochs: number[];
}

const WAIT_MS_DEFAULT = 300_000;
const POLL_MS = 500;

export const command = defineCommand({
  name: "master-key",
  summary: "rotate the cluster master key (new epoch, KEKs re-wrapped) and show its epochs",
  subcommands: [
    {
      name: "rotate",
      summary:
        "make a new master-key epoch, deliver it to every member, re-wrap every KEK, retire the old one",
      description:
        "The new key is made on the peer this call reaches and sealed to its TPM; every other member\n" +
        "fetches it by TPM attestation (a fresh quote, the key wrapped to a one-use ECDH key) and seals it\n" +
        "to its own TPM: it never enters the raft log. Once every active member holds it, it becomes the\n" +
        "active epoch, the project KEKs are re-wrapped under it in batches, and the old epoch is retired once\n" +
        "nothing refers to it and every member holds the new one. Progress goes to stderr. Running it again\n" +
        "while a rotation is unfinished resumes that rotation. Recovery shares made at init rebuild only\n" +
        "the epoch they were made for: pass --recovery-shares to get shares of the new epoch.",
      options: [
        {
          flags: "--recovery-shares <N>",
          description: "also write N recovery shares of the new epoch (needs --threshold, --shares-dir)",
        },
        { flags: "--threshold <K>", description: "shares needed to rebuild the new epoch" },
        {
          flags: "--shares-dir <DIR>",
          description: "where to write the share files (0600, never over a file)",
        },
        {
          flags: "--wait-ms <N>",
          description: "how long to follow the rotation before returning (it goes on in the background)",
          default: String(WAIT_MS_DEFAULT),
        },
      ],
      connection: true,
      output: true,
      async run(args) {
        const shares = intFlag(args, "recovery-shares", 1, 16) ?? 0;
        const threshold = intFlag(args, "threshold", 1, 16) ?? 0;
        const sharesDir = stringFlag(args, "shares-dir");
        if (shares > 0 && (threshold === 0 || sharesDir === undefined)) {
          throw new UsageError("--recovery-shares needs --threshold and --shares-dir");
        }
        if (shares === 0 && (threshold !== 0 || sharesDir !== undefined)) {
          throw new UsageError("--threshold and --shares-dir go with --recovery-shares");
        }
        if (threshold > shares)
          throw new UsageError(`--threshold ${threshold} exceeds --recovery-shares ${shares}`);
        const waitMs = intFlag(args, "wait-ms", 0, 24 * 3600 * 1000) ?? WAIT_MS_DEFAULT;
        // Before the rotation starts: the shares come back once, and a directory that cannot take them would lose them.
        if (sharesDir !== undefined) await mkdir(sharesDir, { recursive: true, mode: 0o700 });
        const client = await clientFrom(connectionSettings(args));
        try {
          const started = await client.adminCall<{
            epoch: number;
            resumed: boolean;
            recovery_shares: string[];
          }>("RotateMasterKey", { recovery_shares: shares, recovery_threshold: threshold });
          const shareFiles: string[] = [];
          for (const text of started.recovery_shares) {
            const share = decodeRecoveryShare(text, "the peer's answer");
            const path = join(sharesDir!, recoveryShareFileName(share));
            await writePrivateFile(path, new TextEncoder().encode(text), false);
            shareFiles.push(path);
          }
          progress(
            `${started.resumed ? "resuming the rotation to" : "staged"} master-key epoch ${started.epoch}` +
              (shareFiles.length > 0 ? `; ${shareFiles.length} recovery shares written to ${sharesDir}` : ""),
          );
          const final = await follow(client, started.epoch, waitMs);
          const retired = final.epochs.filter((e) => e.state === "retired").map((e) => e.epoch);
          const done = final.epochs.every((e) => e.epoch === started.epoch || e.state === "retired");
          emitRecord(
            {
              epoch: started.epoch,
              resumed: started.resumed,
              complete: done,
              epochs: final.epochs,
              retiredEpochs: retired,
              recoveryShareFiles: shareFiles,
            },
            () =>
              done
                ? `master key rotated: epoch ${started.epoch} is active; retired: ${retired.join(", ")}\n`
                : `master key epoch ${started.epoch}: rotation still in progress (see \`lockbox master-key status\`)\n`,
          );
          return EXIT_OK;
        } finally {
          client.close();
        }
      },
    },
    {
      name: "status",
      summary: "show the master-key epochs: state, holders, what each wraps; and the rotation in progress",
      options: [],
      connection: true,
      output: true,
      async run(args) {
        const client = await clientFrom(connectionSettings(args));
        try {
          const s = await client.adminCall<MasterKeyStatus>("GetMasterKeyStatus", {});
          const r = s.rotation;
          emitList(
            s.epochs,
            s.epochs,
            s,
            [
              { header: "EPOCH", value: (e) => String(e.epoch) },
              { header: "STATE", value: (e) => e.state },
              { header: "KEKS", value: (e) => String(e.project_keks) },
              { header: "CA", value: (e) => (e.cluster_ca ? "yes" : "-") },
              { header: "HOLDERS", value: (e) => e.holders.join(",") || "-" },
              { header: "LACKING", value: (e) => e.lacking.join(",") || "-" },
            ],
            `peer ${s.peer_id} wraps under epoch ${s.peer_active_epoch}, holds ${s.peer_held_epochs.join(", ")}` +
              (r !== null && r.phase !== "idle"
                ? `; its rotation to epoch ${r.epoch}: ${r.phase}` +
                  (r.keks_total > 0 ? ` (${r.keks_rewrapped}/${r.keks_total} KEKs re-wrapped)` : "") +
                  (r.detail !== "" ? `: ${r.detail}` : "")
                : ""),
          );
          return EXIT_OK;
        } finally {
          client.close();
        }
      },
    },
  ],
});

function progress(line: string): void {
  process.stderr.write(`lockbox master-key rotate: ${line}\n`);
}

/** Polls the status, printing each change, until every older epoch is retired, the rotation fails, or `waitMs`. */
async function follow(client: LockboxClient, epoch: number, waitMs: number): Promise<MasterKeyStatus> {
  const deadline = Date.now() + waitMs;
  let last = "";
  for (;;) {
    const s = await client.adminCall<MasterKeyStatus>("GetMasterKeyStatus", {});
    const e = s.epochs.find((x) => x.epoch === epoch);
    const older = s.epochs.filter((x) => x.epoch < epoch && x.state !== "retired");
    const kekTotal = s.epochs.reduce((n, x) => n + x.project_keks, 0);
    const line =
      e === undefined
        ? "waiting for the control state"
        : e.state === "staged"
          ? `delivering epoch ${epoch} by attestation: held by ${e.holders.join(", ") || "-"}` +
            (e.lacking.length > 0 ? `; waiting for ${e.lacking.join(", ")}` : "")
          : older.length > 0
            ? `epoch ${epoch} active; re-wrapping project KEKs: ${e.project_keks}/${kekTotal}` +
              (older.some((x) => x.project_keks > 0 || x.cluster_ca)
                ? ""
                : `; retiring epoch ${older.map((x) => x.epoch).join(", ")}` +
                  (e.lacking.length > 0
                    ? ` (waiting for ${e.lacking.join(", ")} to hold epoch ${epoch})`
                    : ""))
            : `epoch ${epoch} active; ${e.project_keks} project KEKs; older epochs retired`;
    if (line !== last) progress(line);
    last = line;
    if (e !== undefined && e.state === "active" && older.length === 0) return s;
    const r = s.rotation;
    if (r !== null && r.epoch === epoch && r.phase === "failed" && s.peer_id !== "") {
      throw new LockboxError(
        "UNAVAILABLE",
        `the rotation to epoch ${epoch} stopped: ${r.detail}; run it again to resume`,
      );
    }
    if (Date.now() > deadline) return s;
    await new Promise((res) => setTimeout(res, POLL_MS));
  }
}
