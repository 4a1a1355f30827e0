/**
 * A client without a certificate calling GetKey as fast as it can, run as
 * its own process so that its work does not share the test's event loop:
 *   node unauthenticated-flood.js ADDRESS CA_FILE DURATION_MS CHANNELS IN_FLIGHT
 * Prints one JSON line at the end: calls made and their status codes.
 */
import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

export interface FloodResult {
  calls: number;
  /** Status code name -> calls that ended with it. */
  codes: Record<string, number>;
  durationMs: number;
}

export async function flood(
  address: string,
  ca: Buffer,
  durationMs: number,
  channels: number,
  inFlight: number,
): Promise<FloodResult> {
  const clients = Array.from(
    { length: channels },
    (_, i) =>
      new grpc.Client(address, grpc.credentials.createSsl(ca), {
        "grpc.ssl_target_name_override": "localhost",
        // Distinct channels, not one shared subchannel.
        "grpc.channel_id": i,
      } as grpc.ChannelOptions),
  );
  const codes: Record<string, number> = {};
  let calls = 0;
  const start = Date.now();
  const stopAt = start + durationMs;
  // A GetKey request: field 1, a UUID.
  const body = Buffer.concat([Buffer.from([0x0a, 36]), Buffer.from("6b1f0c1e-2a3b-4c5d-8e9f-0a1b2c3d4e5f")]);
  const worker = async (client: grpc.Client): Promise<void> => {
    while (Date.now() < stopAt) {
      const code = await new Promise<number>((resolve) =>
        client.makeUnaryRequest(
          "/lockbox.v1.KeyService/GetKey",
          (b: Buffer) => b,
          (b: Buffer) => b,
          body,
          new grpc.Metadata(),
          { deadline: Date.now() + 5_000 },
          (err) => resolve(err === null ? grpc.status.OK : err.code),
        ),
      );
      calls += 1;
      const name = grpc.status[code] ?? String(code);
      codes[name] = (codes[name] ?? 0) + 1;
    }
  };
  await Promise.all(clients.flatMap((c) => Array.from({ length: inFlight }, () => worker(c))));
  for (const c of clients) c.close();
  return { calls, codes, durationMs: Date.now() - start };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [address, caFile, durationMs, channels, inFlight] = process.argv.slice(2);
  const result = await flood(
    address!,
    readFileSync(caFile!),
    Number(durationMs),
    Number(channels),
    Number(inFlight),
  );
  process.stdout.write(JSON.stringify(result) + "\n");
}
