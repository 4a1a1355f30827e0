/**
 * ReadClock, ClockSet and Shutdown on real swtpm processes, each checked with
 * tpm2_readclock (tpm2-tools) as the independent reader: the quote's `safe`
 * flag is lost when swtpm is killed, comes back with ensureClockSafe, and is
 * kept across a stop that followed Shutdown(STATE).
 */
import test from "ava";
import { ensureClockSafe } from "../../tpm/clock/clock-safe.js";
import { TpmClientError, TpmError } from "../../tpm/client/tpm-error.js";
import { TPM_RC } from "../../tpm/spec/response-codes.js";
import { startRestartableSwtpm, type RestartableSwtpm } from "./restartable-swtpm.js";
import { Tpm2Tools } from "./tpm2-tools.js";

interface ToolsClock {
  clock: bigint;
  resetCount: number;
  restartCount: number;
  safe: boolean;
}

/** tpm2_readclock's YAML, parsed. */
async function toolsClock(s: RestartableSwtpm): Promise<ToolsClock> {
  const out = await new Tpm2Tools(s.tcti, s.workDir).run("tpm2_readclock", []);
  const field = (name: string): string => {
    const m = new RegExp(`^\\s*${name}:\\s*(\\S+)`, "m").exec(out);
    if (m === null) throw new Error(`tpm2_readclock printed no ${name}: ${out}`);
    return m[1]!;
  };
  return {
    clock: BigInt(field("clock")),
    resetCount: Number(field("reset_count")),
    restartCount: Number(field("restart_count")),
    safe: field("safe") === "yes",
  };
}

async function ourClock(s: RestartableSwtpm) {
  const tpm = await s.connect();
  try {
    return (await tpm.readClock()).clockInfo;
  } finally {
    await tpm.close();
  }
}

test("ReadClock reports the reset count, restart count and safe flag that tpm2_readclock reports", async (t) => {
  const s = await startRestartableSwtpm(t);
  const ours = await ourClock(s);
  const tools = await toolsClock(s);
  t.is(ours.resetCount, tools.resetCount);
  t.is(ours.restartCount, tools.restartCount);
  t.is(ours.safe, tools.safe);
  t.true(tools.clock >= ours.clock, "the clock does not go back between two reads");
});

test("after swtpm is killed with SIGKILL the clock is not safe; ensureClockSafe makes it safe (tpm2_readclock agrees) and keeps the reset count", async (t) => {
  const s = await startRestartableSwtpm(t);
  await s.stop("SIGKILL");
  await s.start();
  const crashed = await toolsClock(s);
  t.false(crashed.safe, "an unorderly stop clears safe");

  const tpm = await s.connect();
  let result;
  try {
    result = await ensureClockSafe(tpm);
    t.true(result.clockInfo.safe);
    t.true(result.advancedMs > 0n && result.advancedMs <= 1n << 22n);
    // Already safe: nothing moves.
    const again = await ensureClockSafe(tpm);
    t.is(again.advancedMs, 0n);
  } finally {
    await tpm.close();
  }
  const after = await toolsClock(s);
  t.true(after.safe, "tpm2_readclock sees safe: yes");
  t.is(after.resetCount, crashed.resetCount, "the crash stays visible in the reset count");
  t.true(after.clock >= result.clockInfo.clock);
});

test("Shutdown(STATE) before a stop makes the next start a restart with the clock still safe (tpm2_readclock)", async (t) => {
  const s = await startRestartableSwtpm(t);
  const tpm = await s.connect();
  try {
    t.true((await ensureClockSafe(tpm)).clockInfo.safe);
    await tpm.shutdown();
  } finally {
    await tpm.close();
  }
  const before = await toolsClock(s);
  // Even a SIGKILL right after Shutdown keeps what it saved.
  await s.stop("SIGKILL");
  await s.start();
  const after = await toolsClock(s);
  t.true(after.safe);
  t.is(after.resetCount, before.resetCount);
  t.is(after.restartCount, before.restartCount + 1);
});

test("control: the same steps without Shutdown, then SIGKILL, come back as a reset with the clock not safe", async (t) => {
  // Shows the Shutdown test above can fail: only TPM2_Shutdown(STATE) makes the stop orderly.
  const s = await startRestartableSwtpm(t);
  const tpm = await s.connect();
  try {
    t.true((await ensureClockSafe(tpm)).clockInfo.safe);
  } finally {
    await tpm.close();
  }
  const before = await toolsClock(s);
  await s.stop("SIGKILL");
  await s.start();
  const after = await toolsClock(s);
  t.false(after.safe);
  t.is(after.resetCount, before.resetCount + 1);
  t.is(after.restartCount, 0);
});

test("ClockSet refuses to move the clock back (TPM_RC_VALUE); bad arguments are refused before the TPM", async (t) => {
  const s = await startRestartableSwtpm(t);
  const tpm = await s.connect();
  try {
    const err = await t.throwsAsync(tpm.clockSet(0n), { instanceOf: TpmError });
    t.is(err?.baseCode, TPM_RC.VALUE);
    await t.throwsAsync(tpm.clockSet(-1n), { instanceOf: TpmClientError });
    await t.throwsAsync(tpm.clockSet(1n << 64n), { instanceOf: TpmClientError });
    await t.throwsAsync(tpm.clockSet(10n, { authHandle: 0x4000000b }), { instanceOf: TpmClientError });
    await t.throwsAsync(tpm.shutdown(7), { instanceOf: TpmClientError });
  } finally {
    await tpm.close();
  }
});
