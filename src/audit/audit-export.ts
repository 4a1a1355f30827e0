/**
 * A copy of the audit log for a SIEM: every record, once durable, as one JSON line appended to a
 * file, and/or as one RFC 5424 syslog message over UDP (RFC 5426), facility authpriv. The peer's
 * hash-chained log in its store stays the record of truth; the copy carries each record's `prev`
 * and `hash`, so a SIEM can check the chain as well. Exporting never holds a call up: lines are
 * queued, and beyond `queueBytesMax` waiting (a full disk, a stuck file system) records are dropped,
 * counted and reported, never buffered without bound. Records hold no key bytes (audit-log.ts).
 * The file is opened for appending (O_APPEND), so `logrotate` with `copytruncate` works.
 */
import { createSocket, type Socket } from "node:dgram";
import { createWriteStream, type WriteStream } from "node:fs";
import { hostname } from "node:os";
import { isIP } from "node:net";
import { parseHostPort } from "../net/host-port.js";
import type { ExportedAuditRecord } from "./audit-log.js";

export interface AuditExportOptions {
  /** Append JSON lines here ("" or absent: no file). Created 0600 if missing. */
  file?: string;
  /** "udp:HOST:PORT" ("" or absent: no syslog). */
  syslog?: string;
  /** Named in every line and message. */
  peerId: string;
  /** Where a failure to export is reported (at most once per REPORT_EVERY_MS). */
  log: (line: string) => void;
  /** Bytes waiting to be written to the file before records are dropped. Default 16 MiB. */
  queueBytesMax?: number;
}

export interface AuditExport {
  /** Queues one record (never throws, never waits). */
  write(record: ExportedAuditRecord): void;
  /** Records dropped so far (queue full, write or send errors). */
  readonly dropped: number;
  /** Flushes the file and closes both sinks. */
  close(): Promise<void>;
}

/** RFC 5424 PRI: facility authpriv (10), severity notice (5) for an allowed call, warning (4) otherwise. */
const PRI_NOTICE = 10 * 8 + 5;
const PRI_WARNING = 10 * 8 + 4;
const REPORT_EVERY_MS = 60_000;

export async function openAuditExport(options: AuditExportOptions): Promise<AuditExport> {
  const queueBytesMax = options.queueBytesMax ?? 16 * 1024 * 1024;
  let dropped = 0;
  let lastReport = 0;
  const drop = (why: string): void => {
    dropped += 1;
    const now = Date.now();
    if (now - lastReport >= REPORT_EVERY_MS) {
      lastReport = now;
      options.log(`lockbox: audit export dropped a record (${dropped} so far): ${why}`);
    }
  };

  let file: WriteStream | undefined;
  if (options.file !== undefined && options.file !== "") {
    const stream = createWriteStream(options.file, { flags: "a", mode: 0o600 });
    await new Promise<void>((resolve, reject) => {
      stream.once("open", () => resolve());
      stream.once("error", reject);
    });
    stream.on("error", (err) => drop(`file ${options.file}: ${err.message}`));
    file = stream;
  }

  let syslog: { socket: Socket; host: string; port: number } | undefined;
  if (options.syslog !== undefined && options.syslog !== "") {
    const target = options.syslog.startsWith("udp:") ? parseHostPort(options.syslog.slice(4)) : undefined;
    if (target?.host === undefined)
      throw new RangeError(`audit syslog target must be udp:HOST:PORT, got ${options.syslog}`);
    const socket = createSocket(isIP(target.host) === 6 ? "udp6" : "udp4");
    socket.on("error", (err) => drop(`syslog ${options.syslog}: ${err.message}`));
    socket.unref();
    syslog = { socket, host: target.host, port: target.port };
  }

  const host =
    hostname()
      .replace(/[^\x21-\x7e]/g, "")
      .slice(0, 255) || "-";
  return {
    get dropped() {
      return dropped;
    },
    write(record) {
      const json = JSON.stringify({ type: "lockbox.audit", peer: options.peerId, ...record });
      if (file !== undefined) {
        if (file.writableLength > queueBytesMax) drop(`file queue above ${queueBytesMax} bytes`);
        else file.write(json + "\n");
      }
      if (syslog !== undefined) {
        const pri = record.outcome === "ok" ? PRI_NOTICE : PRI_WARNING;
        // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG
        const message = `<${pri}>1 ${record.time} ${host} lockbox ${process.pid} audit - ${json}`;
        syslog.socket.send(message, syslog.port, syslog.host, (err) => {
          if (err) drop(`syslog ${options.syslog}: ${err.message}`);
        });
      }
    },
    async close() {
      if (file !== undefined) {
        const f = file;
        await new Promise<void>((resolve) => f.end(() => resolve()));
      }
      if (syslog !== undefined) {
        const s = syslog.socket;
        await new Promise<void>((resolve) => s.close(() => resolve()));
      }
    },
  };
}
