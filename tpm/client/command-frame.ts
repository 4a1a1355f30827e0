/**
 * One TPM command round trip: build the command bytes (header, handles,
 * authorization area, parameters), send them, check the response code, verify
 * each session's response HMAC and undo response parameter encryption.
 */
import { TpmDecodeError } from "../marshal/decode-error.js";
import { TpmReader } from "../marshal/reader.js";
import { TpmWriter } from "../marshal/writer.js";
import { TPM_HT, TPM_ST, handleType } from "../spec/constants.js";
import { handleName } from "../spec/name.js";
import type { TpmTransport } from "../transport/transport.js";
import type { AuthSession, CommandContext, SessionUse } from "./sessions.js";
import { TpmClientError, TpmError, commandName } from "./tpm-error.js";

/** A handle, with its name when it is an object or NV index authorized by an HMAC session. */
export interface HandleRef {
  readonly handle: number;
  readonly name?: Uint8Array;
}

export interface SessionEntry {
  readonly session: AuthSession;
  readonly use?: SessionUse;
}

export interface CommandSpec {
  readonly commandCode: number;
  readonly handles?: readonly (number | HandleRef)[];
  /**
   * Sessions: first one per authorized handle, in handle order; any after
   * those serve only parameter encryption (the TPM allows up to three).
   */
  readonly sessions?: readonly SessionEntry[];
  readonly params?: Uint8Array;
  readonly responseHandleCount?: number;
}

export interface CommandResult {
  readonly handles: readonly number[];
  /** Response parameters, already decrypted. */
  readonly params: Uint8Array;
}

const HEADER_BYTES = 10;

function nameOf(ref: number | HandleRef): Uint8Array {
  const r = typeof ref === "number" ? { handle: ref } : ref;
  if (r.name !== undefined) return r.name;
  const ht = handleType(r.handle);
  if (
    ht === TPM_HT.PCR ||
    ht === TPM_HT.PERMANENT ||
    ht === TPM_HT.HMAC_SESSION ||
    ht === TPM_HT.POLICY_SESSION
  ) {
    return handleName(r.handle);
  }
  throw new TpmClientError(
    "NAME_REQUIRED",
    `handle 0x${r.handle.toString(16)} needs its name for an HMAC session`,
  );
}

/** Replaces the contents of the TPM2B at the start of `params` with `transform(contents)`. */
function transformFirstTpm2b(
  params: Uint8Array,
  what: string,
  transform: (b: Uint8Array) => Uint8Array,
): Uint8Array {
  const r = new TpmReader(params);
  const size = r.u16(`${what}.size`);
  const contents = r.bytesN(size, what);
  const out = new Uint8Array(params.length);
  out.set(params.subarray(0, 2));
  out.set(transform(contents), 2);
  out.set(params.subarray(2 + size), 2 + size);
  return out;
}

export async function runCommand(transport: TpmTransport, spec: CommandSpec): Promise<CommandResult> {
  const handles = spec.handles ?? [];
  const sessions = spec.sessions ?? [];
  let params = spec.params ?? new Uint8Array(0);
  if (sessions.length > 3) {
    throw new TpmClientError("BAD_ARGUMENT", `${commandName(spec.commandCode)}: at most three sessions`);
  }
  let names: readonly Uint8Array[] | undefined;
  const ctx: CommandContext = {
    commandCode: spec.commandCode,
    names: () => (names ??= handles.map(nameOf)),
  };

  for (const s of sessions) s.session.begin(s.use ?? {});
  const decryptor = sessions.find((s) => s.session.wantsDecryptCommand);
  if (decryptor !== undefined) {
    params = transformFirstTpm2b(params, "first command parameter", (b) =>
      decryptor.session.encryptParameter(b),
    );
  }

  const w = new TpmWriter();
  w.u16(sessions.length > 0 ? TPM_ST.SESSIONS : TPM_ST.NO_SESSIONS)
    .u32(0)
    .u32(spec.commandCode);
  for (const h of handles) w.u32(typeof h === "number" ? h : h.handle);
  if (sessions.length > 0) {
    const auths = sessions.map((s) => s.session.commandAuth(ctx, params));
    w.u32(auths.reduce((n, a) => n + a.length, 0));
    for (const a of auths) w.bytes(a);
  }
  w.bytes(params);
  const command = w.finish();
  new DataView(command.buffer, command.byteOffset).setUint32(2, command.length);

  const response = await transport.send(command);
  return parseResponse(spec, sessions, ctx, response);
}

/**
 * The one place a response code is checked: validates the header and turns a
 * non-zero code into a TpmError with its decoded name. Returns a reader
 * positioned after the header.
 */
export function checkResponse(commandCode: number, response: Uint8Array, sessionsSent: boolean): TpmReader {
  const cmd = commandName(commandCode);
  const r = new TpmReader(response);
  const tag = r.u16("response.tag");
  const size = r.u32("response.size");
  const rc = r.u32("response.responseCode");
  if (size !== response.length || size < HEADER_BYTES) {
    throw new TpmDecodeError(
      "INCONSISTENT",
      "response.size",
      `${cmd}: header says ${size}, got ${response.length}`,
    );
  }
  if (rc !== 0) throw new TpmError(commandCode, rc);
  const expectedTag = sessionsSent ? TPM_ST.SESSIONS : TPM_ST.NO_SESSIONS;
  if (tag !== expectedTag) {
    throw new TpmClientError(
      "BAD_RESPONSE",
      `${cmd}: response tag 0x${tag.toString(16)}, expected 0x${expectedTag.toString(16)}`,
    );
  }
  return r;
}

function parseResponse(
  spec: CommandSpec,
  sessions: readonly SessionEntry[],
  ctx: CommandContext,
  response: Uint8Array,
): CommandResult {
  const r = checkResponse(spec.commandCode, response, sessions.length > 0);
  const handles: number[] = [];
  for (let i = 0; i < (spec.responseHandleCount ?? 0); i++) handles.push(r.u32("response.handle"));
  try {
    return parseAfterHandles(sessions, ctx, r, handles);
  } catch (err) {
    // The TPM succeeded and holds these handles, but we refuse the response: let the caller flush them.
    if (handles.length > 0 && typeof err === "object" && err !== null) {
      Object.defineProperty(err, RESPONSE_HANDLES, { value: handles, enumerable: false });
    }
    throw err;
  }
}

const RESPONSE_HANDLES = Symbol("tpm.responseHandles");

/**
 * The handles of a successful response that was refused after its handle
 * area was read (a response HMAC that does not verify, malformed parameters):
 * the TPM created them, so they must be flushed. Empty for any other error.
 */
export function responseHandlesOf(err: unknown): readonly number[] {
  if (typeof err !== "object" || err === null) return [];
  const handles = (err as { [RESPONSE_HANDLES]?: unknown })[RESPONSE_HANDLES];
  return Array.isArray(handles) ? (handles as number[]) : [];
}

function parseAfterHandles(
  sessions: readonly SessionEntry[],
  ctx: CommandContext,
  r: TpmReader,
  handles: number[],
): CommandResult {
  if (sessions.length === 0) return { handles, params: r.rest() };

  const paramSize = r.u32("response.parameterSize");
  let params = r.bytesN(paramSize, "response.parameters");
  for (const s of sessions) s.session.checkResponseAuth(ctx, params, r);
  r.end("response.authorizationArea");
  const encryptor = sessions.find((s) => s.session.wantsEncryptResponse);
  if (encryptor !== undefined) {
    params = transformFirstTpm2b(params, "first response parameter", (b) =>
      encryptor.session.decryptParameter(b),
    );
  }
  return { handles, params };
}
