/**
 * The TPM 2.0 command client: typed commands over one TpmTransport, one
 * command at a time. Every method sends exactly one command (except the
 * chunked reads GetRandom, PCR_Read, GetCapability-all and NV_Read). Objects
 * and sessions it returns are the caller's to flush: use withTransient /
 * withSession (./scoped.ts) so they are flushed also when a later step fails.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { randomBytes } from "node:crypto";
import { decodeExact } from "../marshal/reader.js";
import { encode } from "../marshal/writer.js";
import { TpmtHa, TpmlDigestValues, TpmtTkCreation } from "../spec/basic.js";
import { TpmsClockInfo } from "../spec/attest.js";
import { TpmsCapabilityData } from "../spec/capability.js";
import { TPM_ALG_ID, TPM_CAP, TPM_CC, TPM_HT, TPM_RH, TPM_SU, handleType } from "../spec/constants.js";
import { Tpm2bCreationData, type TpmsCreationData } from "../spec/creation.js";
import { Tpm2bIdObject, type TpmsIdObject } from "../spec/credential.js";
import { digestSize } from "../spec/hash.js";
import { LIMITS } from "../spec/limits.js";
import { nvName } from "../spec/name.js";
import { Tpm2bNvPublic, type TpmsNvPublic } from "../spec/nv.js";
import { TpmlDigest, TpmlPcrSelection, TpmsPcrSelection } from "../spec/pcr.js";
import { Tpm2bPublic, type TpmtPublic } from "../spec/public.js";
import { TPM_RC } from "../spec/response-codes.js";
import { TpmtScheme, TpmtSymDef } from "../spec/schemes.js";
import { Tpm2bSensitiveCreate, TpmsSensitiveCreate } from "../spec/sensitive.js";
import { TpmtSignature } from "../spec/signature.js";
import type { TpmTransport } from "../transport/transport.js";
import {
  type CommandResult,
  type CommandSpec,
  type HandleRef,
  responseHandlesOf,
  runCommand,
} from "./command-frame.js";
import { makeSalt } from "./salt.js";
import {
  type AuthSession,
  EMPTY_PASSWORD,
  SESSION_TYPE_CODE,
  type SessionType,
  TpmSession,
  deriveSessionKey,
} from "./sessions.js";
import { TpmClientError, TpmError } from "./tpm-error.js";

/** A loaded object: its handle, name and public area. */
export interface TpmObject {
  readonly handle: number;
  readonly name: Uint8Array;
  readonly publicArea: TpmtPublic;
}

export interface CreatePrimaryResult extends TpmObject {
  readonly creationData: TpmsCreationData;
  readonly creationHash: Uint8Array;
  readonly creationTicket: TpmtTkCreation;
}

export interface CreateResult {
  /** TPM2B_PRIVATE contents: the object's sensitive area wrapped to its parent. */
  readonly outPrivate: Uint8Array;
  readonly outPublic: TpmtPublic;
  readonly creationData: TpmsCreationData;
  readonly creationHash: Uint8Array;
  readonly creationTicket: TpmtTkCreation;
}

export interface StartAuthSessionOptions {
  readonly type: SessionType;
  /** A loaded decryption key to salt the session with; the session is unsalted without it. */
  readonly saltKey?: TpmObject;
  /** Parameter encryption cipher; defaults to AES-128-CFB when salted, NULL otherwise. */
  readonly symmetric?: TpmtSymDef;
  /** Defaults to SHA-256. */
  readonly authHash?: number;
}

export interface PcrValue {
  readonly hash: number;
  readonly pcr: number;
  readonly digest: Uint8Array;
}

export interface PcrReadResult {
  readonly updateCounter: number;
  readonly values: readonly PcrValue[];
}

export interface QuoteResult {
  /** The TPM2B_ATTEST contents: the exact bytes the signature covers. */
  readonly quoted: Uint8Array;
  readonly signature: TpmtSignature;
}

const GET_RANDOM_CHUNK_BYTES = 32;
const PCR_READ_ROUNDS_MAX = 64;
const CAPABILITY_ROUNDS_MAX = 64;
const NV_READ_CHUNK_BYTES = 1024;
const COMMAND_ATTEMPTS_MAX = 8;
const RETRYABLE_CODES: ReadonlySet<number> = new Set([TPM_RC.RETRY, TPM_RC.YIELDED, TPM_RC.TESTING]);

export class Tpm {
  private tail: Promise<unknown> = Promise.resolve();
  private operationTail: Promise<unknown> = Promise.resolve();
  /** Marks the async context that holds this TPM's operation lock, so nested exclusive() calls run at once. */
  private readonly holder = new AsyncLocalStorage<true>();

  constructor(readonly transport: TpmTransport) {}

  /**
   * Runs a multi-command operation alone: one operation at a time holds
   * objects and sessions. Commands already queue one at a time, but two
   * interleaved unseals would hold four objects where swtpm has room for
   * three. Re-entrant: an operation may call others.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.holder.getStore() === true) return fn();
    const result = this.operationTail.then(() => this.holder.run(true, fn));
    this.operationTail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** Sends one command after the previous one finished (a promise queue: one command in flight). */
  execute(spec: CommandSpec): Promise<CommandResult> {
    const result = this.tail.then(() => this.runWithRetry(spec));
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /**
   * execute() for a command that creates a transient object or session, then
   * `decode` of its response. If the TPM succeeded but the response is
   * refused (it does not decode, its HMAC does not verify, its handle is of
   * the wrong kind), the handle the TPM returned is flushed before the error
   * is rethrown: nobody else knows it, so it would stay until the TPM restarts.
   */
  private async executeCreating<T>(
    spec: CommandSpec,
    handleKind: number,
    decode: (result: CommandResult) => T,
  ): Promise<T> {
    let result: CommandResult;
    try {
      result = await this.execute(spec);
    } catch (err) {
      await this.flushRefused(responseHandlesOf(err), handleKind);
      throw err;
    }
    try {
      return decode(result);
    } catch (err) {
      await this.flushRefused(result.handles, handleKind);
      throw err;
    }
  }

  /**
   * Flushes handles of a refused response, only those of the kind the command
   * creates (a corrupted handle of another kind could name someone else's
   * object). A flush failure is secondary to the refusal being reported.
   */
  private async flushRefused(handles: readonly number[], handleKind: number): Promise<void> {
    for (const h of handles) {
      if (handleType(h) === handleKind) await this.flushContext(h).catch(() => undefined);
    }
  }

  close(): Promise<void> {
    return this.transport.close();
  }

  /**
   * TPM_RC_RETRY, YIELDED and TESTING mean the TPM did not run the command
   * (libtpms answers RETRY to an ECDSA sign now and then): send it again, a
   * bounded number of times. Sessions pick fresh nonces on each attempt.
   */
  private async runWithRetry(spec: CommandSpec): Promise<CommandResult> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await runCommand(this.transport, spec);
      } catch (err) {
        const retryable = err instanceof TpmError && RETRYABLE_CODES.has(err.baseCode);
        if (!retryable || attempt >= COMMAND_ATTEMPTS_MAX) throw err;
      }
    }
  }

  /** TPM2_Startup. Returns false if the TPM was already started (TPM_RC_INITIALIZE). */
  async startup(type: number = TPM_SU.CLEAR): Promise<boolean> {
    try {
      await this.execute({ commandCode: TPM_CC.Startup, params: encode((w) => w.u16(type)) });
      return true;
    } catch (err) {
      if (err instanceof TpmError && err.baseCode === TPM_RC.INITIALIZE) return false;
      throw err;
    }
  }

  /**
   * TPM2_Shutdown. STATE (the default) saves the TPM's state, so the next
   * start is a restart (restartCount + 1) with the clock saved and `safe`
   * kept; CLEAR makes it a reset. Send it last: a state-changing command
   * after it clears the orderly flag again.
   */
  async shutdown(type: number = TPM_SU.STATE): Promise<void> {
    if (type !== TPM_SU.STATE && type !== TPM_SU.CLEAR) {
      throw new TpmClientError("BAD_ARGUMENT", `shutdown: type must be TPM_SU_STATE or TPM_SU_CLEAR`);
    }
    await this.execute({ commandCode: TPM_CC.Shutdown, params: encode((w) => w.u16(type)) });
  }

  /** TPM2_ReadClock: the TPM's time (ms since its last start) and its TPMS_CLOCK_INFO. */
  async readClock(): Promise<{ time: bigint; clockInfo: TpmsClockInfo }> {
    const { params } = await this.execute({ commandCode: TPM_CC.ReadClock });
    return decodeExact(params, "ReadClock response", (r) => ({
      time: r.u64("TPMS_TIME_INFO.time"),
      clockInfo: TpmsClockInfo.unmarshal(r),
    }));
  }

  /**
   * TPM2_ClockSet: moves Clock forward to `newTime` (ms). The TPM refuses a
   * value below the current one (TPM_RC_VALUE). `authHandle` is TPM_RH_OWNER
   * (default) or TPM_RH_PLATFORM.
   */
  async clockSet(newTime: bigint, options: { authHandle?: number; auth?: AuthSession } = {}): Promise<void> {
    const authHandle = options.authHandle ?? TPM_RH.OWNER;
    if (authHandle !== TPM_RH.OWNER && authHandle !== TPM_RH.PLATFORM) {
      throw new TpmClientError(
        "BAD_ARGUMENT",
        "clockSet: authHandle must be TPM_RH_OWNER or TPM_RH_PLATFORM",
      );
    }
    if (newTime < 0n || newTime > 0xffffffffffffffffn) {
      throw new TpmClientError("BAD_ARGUMENT", "clockSet: newTime must fit in a UINT64");
    }
    await this.execute({
      commandCode: TPM_CC.ClockSet,
      handles: [authHandle],
      sessions: [{ session: options.auth ?? EMPTY_PASSWORD }],
      params: encode((w) => w.u64(newTime)),
    });
  }

  /**
   * TPM2_GetRandom. With `encryptSession` (salted), each response is
   * encrypted on the bus and its HMAC verified.
   */
  async getRandom(bytes: number, options: { encryptSession?: TpmSession } = {}): Promise<Uint8Array> {
    const enc = options.encryptSession;
    if (!Number.isInteger(bytes) || bytes < 0 || bytes > 4096) {
      throw new TpmClientError("BAD_ARGUMENT", `getRandom: bytes must be 0..4096, got ${bytes}`);
    }
    const out = new Uint8Array(bytes);
    let filled = 0;
    // Bounded: each round asks for at most one digest's worth and must make progress.
    for (let round = 0; filled < bytes && round <= bytes; round++) {
      const want = Math.min(GET_RANDOM_CHUNK_BYTES, bytes - filled);
      const { params } = await this.execute({
        commandCode: TPM_CC.GetRandom,
        params: encode((w) => w.u16(want)),
        ...(enc ? { sessions: [{ session: enc, use: { encryptResponse: true } }] } : {}),
      });
      const chunk = decodeExact(params, "GetRandom response", (r) =>
        r.tpm2b("randomBytes", LIMITS.digestBytes),
      );
      if (chunk.length === 0 || chunk.length > want) {
        throw new TpmClientError("BAD_RESPONSE", `GetRandom returned ${chunk.length} bytes for ${want}`);
      }
      out.set(chunk, filled);
      filled += chunk.length;
    }
    return out;
  }

  async getCapability(
    capability: number,
    property: number,
    propertyCount: number,
  ): Promise<{ moreData: boolean; capabilityData: TpmsCapabilityData }> {
    const { params } = await this.execute({
      commandCode: TPM_CC.GetCapability,
      params: encode((w) => w.u32(capability).u32(property).u32(propertyCount)),
    });
    return decodeExact(params, "GetCapability response", (r) => ({
      moreData: r.bool("moreData"),
      capabilityData: TpmsCapabilityData.unmarshal(r),
    }));
  }

  /** Every handle of the range starting at `firstHandle` (TPM_CAP_HANDLES), following moreData. */
  async getHandles(firstHandle: number): Promise<number[]> {
    const rangeTop = firstHandle >>> 24;
    const out: number[] = [];
    let next = firstHandle;
    for (let round = 0; round < CAPABILITY_ROUNDS_MAX; round++) {
      const { moreData, capabilityData } = await this.getCapability(TPM_CAP.HANDLES, next, 64);
      const d = capabilityData.data;
      if (d.capability !== TPM_CAP.HANDLES)
        throw new TpmClientError("BAD_RESPONSE", "GetCapability: wrong capability");
      const inRange = d.handles.filter((h) => h >>> 24 === rangeTop);
      out.push(...inRange);
      if (!moreData || inRange.length === 0) return out;
      next = inRange[inRange.length - 1]! + 1;
    }
    throw new TpmClientError("BAD_RESPONSE", "GetCapability(HANDLES) did not finish");
  }

  /** One TPM property (TPM_CAP_TPM_PROPERTIES), or undefined if the TPM does not report it. */
  async getProperty(property: number): Promise<number | undefined> {
    const { capabilityData } = await this.getCapability(TPM_CAP.TPM_PROPERTIES, property, 1);
    const d = capabilityData.data;
    if (d.capability !== TPM_CAP.TPM_PROPERTIES) throw new TpmClientError("BAD_RESPONSE", "wrong capability");
    return d.tpmProperties.find((p) => p.property === property)?.value;
  }

  /** TPM2_PCR_Read of a whole selection: repeats the command until every selected PCR was returned. */
  async pcrRead(selection: TpmlPcrSelection): Promise<PcrReadResult> {
    const wanted = selection.entries();
    const got = new Map<string, Uint8Array>();
    let updateCounter = -1;
    for (let round = 0; round < PCR_READ_ROUNDS_MAX; round++) {
      const remaining = wanted.filter((e) => !got.has(`${e.hash}:${e.pcr}`));
      if (remaining.length === 0) break;
      const banks = [...new Set(remaining.map((e) => e.hash))];
      const request = new TpmlPcrSelection(
        banks.map((hash) =>
          TpmsPcrSelection.of(
            hash,
            remaining.filter((e) => e.hash === hash).map((e) => e.pcr),
          ),
        ),
      );
      const { params } = await this.execute({
        commandCode: TPM_CC.PCR_Read,
        params: encode((w) => request.marshal(w)),
      });
      const res = decodeExact(params, "PCR_Read response", (r) => ({
        counter: r.u32("pcrUpdateCounter"),
        sel: TpmlPcrSelection.unmarshal(r),
        values: TpmlDigest.unmarshal(r),
      }));
      // A PCR changed between two rounds would mix states: start again.
      if (updateCounter !== -1 && res.counter !== updateCounter) got.clear();
      updateCounter = res.counter;
      const returned = res.sel.entries();
      if (returned.length !== res.values.digests.length) {
        throw new TpmClientError("BAD_RESPONSE", "PCR_Read: selection and digest counts differ");
      }
      if (returned.length === 0)
        throw new TpmClientError("BAD_RESPONSE", "PCR_Read returned no PCR (bank not allocated?)");
      returned.forEach((e, i) => got.set(`${e.hash}:${e.pcr}`, res.values.digests[i]!));
    }
    const values = wanted.map((e) => {
      const digest = got.get(`${e.hash}:${e.pcr}`);
      if (digest === undefined)
        throw new TpmClientError("BAD_RESPONSE", `PCR_Read did not return PCR ${e.pcr}`);
      return { hash: e.hash, pcr: e.pcr, digest };
    });
    return { updateCounter, values };
  }

  /** TPM2_PCR_Extend: extends PCR `pcr` in each bank with the given digest. */
  async pcrExtend(
    pcr: number,
    digests: readonly TpmtHa[],
    auth: AuthSession = EMPTY_PASSWORD,
  ): Promise<void> {
    if (!Number.isInteger(pcr) || pcr < 0 || pcr > 23)
      throw new TpmClientError("BAD_ARGUMENT", `bad PCR ${pcr}`);
    for (const d of digests) {
      if (digestSize(d.hashAlg) !== d.digest.length)
        throw new TpmClientError("BAD_ARGUMENT", "digest size mismatch");
    }
    await this.execute({
      commandCode: TPM_CC.PCR_Extend,
      handles: [pcr],
      sessions: [{ session: auth }],
      params: encode((w) => new TpmlDigestValues(digests).marshal(w)),
    });
  }

  async createPrimary(
    hierarchy: number,
    template: TpmtPublic,
    options: { sensitive?: TpmsSensitiveCreate; auth?: AuthSession } = {},
  ): Promise<CreatePrimaryResult> {
    const sensitive = options.sensitive ?? new TpmsSensitiveCreate();
    const spec: CommandSpec = {
      commandCode: TPM_CC.CreatePrimary,
      handles: [hierarchy],
      sessions: [{ session: options.auth ?? EMPTY_PASSWORD }],
      params: encode((w) => {
        new Tpm2bSensitiveCreate(sensitive).marshal(w);
        new Tpm2bPublic(template).marshal(w);
        w.tpm2b(new Uint8Array(0)); // outsideInfo
        new TpmlPcrSelection([]).marshal(w); // creationPCR
      }),
      responseHandleCount: 1,
    };
    return this.executeCreating(spec, TPM_HT.TRANSIENT, ({ handles, params }) =>
      decodeExact(params, "CreatePrimary response", (r) => {
        const publicArea = Tpm2bPublic.unmarshal(r).publicArea;
        const creationData = Tpm2bCreationData.unmarshal(r).creationData;
        const creationHash = r.tpm2b("creationHash", LIMITS.digestBytes);
        const creationTicket = TpmtTkCreation.unmarshal(r);
        const name = r.tpm2b("name", LIMITS.nameBytes);
        const handle = expectHandleType(handles[0]!, TPM_HT.TRANSIENT, "CreatePrimary");
        return { handle, name, publicArea, creationData, creationHash, creationTicket };
      }),
    );
  }

  /** TPM2_Create under a loaded parent. `parentAuth` may be a salted session with decryptCommand to hide the sensitive data. */
  async create(
    parent: TpmObject,
    template: TpmtPublic,
    options: { sensitive?: TpmsSensitiveCreate; parentAuth?: AuthSession; encryptSensitive?: boolean } = {},
  ): Promise<CreateResult> {
    const sensitive = options.sensitive ?? new TpmsSensitiveCreate();
    const { params } = await this.execute({
      commandCode: TPM_CC.Create,
      handles: [parent],
      sessions: [
        {
          session: options.parentAuth ?? EMPTY_PASSWORD,
          use: { decryptCommand: options.encryptSensitive === true },
        },
      ],
      params: encode((w) => {
        new Tpm2bSensitiveCreate(sensitive).marshal(w);
        new Tpm2bPublic(template).marshal(w);
        w.tpm2b(new Uint8Array(0));
        new TpmlPcrSelection([]).marshal(w);
      }),
    });
    return decodeExact(params, "Create response", (r) => ({
      outPrivate: r.tpm2b("outPrivate", LIMITS.privateBytes),
      outPublic: Tpm2bPublic.unmarshal(r).publicArea,
      creationData: Tpm2bCreationData.unmarshal(r).creationData,
      creationHash: r.tpm2b("creationHash", LIMITS.digestBytes),
      creationTicket: TpmtTkCreation.unmarshal(r),
    }));
  }

  async load(
    parent: TpmObject,
    inPrivate: Uint8Array,
    inPublic: TpmtPublic,
    parentAuth: AuthSession = EMPTY_PASSWORD,
  ): Promise<TpmObject> {
    const spec: CommandSpec = {
      commandCode: TPM_CC.Load,
      handles: [parent],
      sessions: [{ session: parentAuth }],
      params: encode((w) => {
        w.tpm2b(inPrivate);
        new Tpm2bPublic(inPublic).marshal(w);
      }),
      responseHandleCount: 1,
    };
    return this.executeCreating(spec, TPM_HT.TRANSIENT, ({ handles, params }) => {
      const name = decodeExact(params, "Load response", (r) => r.tpm2b("name", LIMITS.nameBytes));
      return { handle: expectHandleType(handles[0]!, TPM_HT.TRANSIENT, "Load"), name, publicArea: inPublic };
    });
  }

  async readPublic(handle: number): Promise<TpmObject & { qualifiedName: Uint8Array }> {
    const { params } = await this.execute({ commandCode: TPM_CC.ReadPublic, handles: [handle] });
    return decodeExact(params, "ReadPublic response", (r) => ({
      handle,
      publicArea: Tpm2bPublic.unmarshal(r).publicArea,
      name: r.tpm2b("name", LIMITS.nameBytes),
      qualifiedName: r.tpm2b("qualifiedName", LIMITS.nameBytes),
    }));
  }

  /** TPM2_FlushContext. The handle goes in the parameter area, not the handle area. */
  async flushContext(handle: number): Promise<void> {
    await this.execute({ commandCode: TPM_CC.FlushContext, params: encode((w) => w.u32(handle)) });
  }

  /** Flushes a session and marks it closed so later use fails on our side. */
  async flushSession(session: TpmSession): Promise<void> {
    if (session.isFlushed) return;
    session.markFlushed();
    await this.flushContext(session.handle);
  }

  async startAuthSession(options: StartAuthSessionOptions): Promise<TpmSession> {
    const authHash = options.authHash ?? TPM_ALG_ID.SHA256;
    const nonceBytes = digestSize(authHash);
    if (nonceBytes === undefined) throw new TpmClientError("BAD_ARGUMENT", "unknown authHash");
    const symmetric = options.symmetric ?? (options.saltKey ? TpmtSymDef.AES_128_CFB : TpmtSymDef.NULL);
    const salt = options.saltKey ? makeSalt(options.saltKey.publicArea) : undefined;
    const nonceCaller = new Uint8Array(randomBytes(nonceBytes));
    const sessionType = options.type === "hmac" ? TPM_HT.HMAC_SESSION : TPM_HT.POLICY_SESSION;
    const spec: CommandSpec = {
      commandCode: TPM_CC.StartAuthSession,
      handles: [options.saltKey?.handle ?? TPM_RH.NULL, TPM_RH.NULL],
      params: encode((w) => {
        w.tpm2b(nonceCaller);
        w.tpm2b(salt?.encryptedSalt ?? new Uint8Array(0));
        w.u8(SESSION_TYPE_CODE[options.type]);
        symmetric.marshal(w);
        w.u16(authHash);
      }),
      responseHandleCount: 1,
    };
    return this.executeCreating(spec, sessionType, ({ handles, params }) => {
      const nonceTpm = decodeExact(params, "StartAuthSession response", (r) =>
        r.tpm2b("nonceTPM", LIMITS.digestBytes),
      );
      const sessionKey = deriveSessionKey(authHash, salt?.salt ?? new Uint8Array(0), nonceTpm, nonceCaller);
      const handle = expectHandleType(handles[0]!, sessionType, "StartAuthSession");
      return new TpmSession(handle, options.type, authHash, symmetric, sessionKey, nonceCaller, nonceTpm);
    });
  }

  /** TPM2_PolicyPCR. With no `pcrDigest` the TPM uses the current values (and checks them at use). */
  async policyPcr(
    session: TpmSession,
    pcrs: TpmlPcrSelection,
    pcrDigest: Uint8Array = new Uint8Array(0),
  ): Promise<void> {
    await this.execute({
      commandCode: TPM_CC.PolicyPCR,
      handles: [session.handle],
      params: encode((w) => {
        w.tpm2b(pcrDigest);
        pcrs.marshal(w);
      }),
    });
  }

  async policyGetDigest(session: TpmSession): Promise<Uint8Array> {
    const { params } = await this.execute({ commandCode: TPM_CC.PolicyGetDigest, handles: [session.handle] });
    return decodeExact(params, "PolicyGetDigest response", (r) =>
      r.tpm2b("policyDigest", LIMITS.digestBytes),
    );
  }

  /** TPM2_PolicySecret: asserts knowledge of `authHandle`'s auth (e.g. TPM_RH_ENDORSEMENT) in a policy session. */
  async policySecret(
    authHandle: number | HandleRef,
    policySession: TpmSession,
    options: { auth?: AuthSession; cpHashA?: Uint8Array; policyRef?: Uint8Array; expiration?: number } = {},
  ): Promise<void> {
    await this.execute({
      commandCode: TPM_CC.PolicySecret,
      handles: [authHandle, policySession.handle],
      sessions: [{ session: options.auth ?? EMPTY_PASSWORD }],
      params: encode((w) => {
        w.tpm2b(new Uint8Array(0)); // nonceTPM: no freshness binding needed for an immediate use
        w.tpm2b(options.cpHashA ?? new Uint8Array(0));
        w.tpm2b(options.policyRef ?? new Uint8Array(0));
        w.i32(options.expiration ?? 0);
      }),
    });
  }

  /** TPM2_Quote with the key's own scheme (inScheme NULL). */
  async quote(
    signKey: TpmObject,
    qualifyingData: Uint8Array,
    pcrs: TpmlPcrSelection,
    auth: AuthSession = EMPTY_PASSWORD,
  ): Promise<QuoteResult> {
    if (qualifyingData.length > LIMITS.dataBytes) {
      throw new TpmClientError("BAD_ARGUMENT", `qualifyingData exceeds ${LIMITS.dataBytes} bytes`);
    }
    const { params } = await this.execute({
      commandCode: TPM_CC.Quote,
      handles: [signKey],
      sessions: [{ session: auth }],
      params: encode((w) => {
        w.tpm2b(qualifyingData);
        TpmtScheme.NULL.marshal(w);
        pcrs.marshal(w);
      }),
    });
    return decodeExact(params, "Quote response", (r) => ({
      quoted: r.tpm2b("quoted", LIMITS.attestBytes),
      signature: TpmtSignature.unmarshal(r),
    }));
  }

  /**
   * TPM2_ActivateCredential: `activateKey` (the AK, admin role, password) and
   * `key` (the EK, user role: a policy session that ran PolicySecret(endorsement)).
   */
  async activateCredential(
    activateKey: TpmObject,
    key: TpmObject,
    credentialBlob: TpmsIdObject,
    secret: Uint8Array,
    keyAuth: AuthSession,
    activateAuth: AuthSession = EMPTY_PASSWORD,
  ): Promise<Uint8Array> {
    const { params } = await this.execute({
      commandCode: TPM_CC.ActivateCredential,
      handles: [activateKey, key],
      sessions: [{ session: activateAuth }, { session: keyAuth }],
      params: encode((w) => {
        new Tpm2bIdObject(credentialBlob).marshal(w);
        w.tpm2b(secret);
      }),
    });
    return decodeExact(params, "ActivateCredential response", (r) => r.tpm2b("certInfo", LIMITS.digestBytes));
  }

  /** TPM2_Unseal. With a salted session the response is encrypted, so the data never crosses the bus in clear. */
  async unseal(
    item: TpmObject,
    auth: AuthSession,
    options: { encryptResponse?: boolean; entityAuth?: Uint8Array } = {},
  ): Promise<Uint8Array> {
    const use = {
      encryptResponse: options.encryptResponse === true,
      ...(options.entityAuth ? { entityAuth: options.entityAuth } : {}),
    };
    const { params } = await this.execute({
      commandCode: TPM_CC.Unseal,
      handles: [item],
      sessions: [{ session: auth, use }],
    });
    return decodeExact(params, "Unseal response", (r) => r.tpm2b("outData", LIMITS.sensitiveDataBytes));
  }

  async nvReadPublic(nvIndex: number): Promise<{ nvPublic: TpmsNvPublic; name: Uint8Array }> {
    const { params } = await this.execute({ commandCode: TPM_CC.NV_ReadPublic, handles: [nvIndex] });
    const res = decodeExact(params, "NV_ReadPublic response", (r) => ({
      nvPublic: Tpm2bNvPublic.unmarshal(r).nvPublic,
      name: r.tpm2b("nvName", LIMITS.nameBytes),
    }));
    if (res.nvPublic.nvIndex !== nvIndex) {
      throw new TpmClientError(
        "BAD_RESPONSE",
        `NV_ReadPublic returned index 0x${res.nvPublic.nvIndex.toString(16)}`,
      );
    }
    return res;
  }

  /**
   * Reads a whole NV index in chunks. `authHandle` is the index itself or a
   * hierarchy (TPM_RH_OWNER) depending on the index's read attributes.
   */
  async nvReadAll(
    nvIndex: number,
    authHandle: number,
    options: { auth?: AuthSession; chunkBytes?: number } = {},
  ): Promise<Uint8Array> {
    const chunk = options.chunkBytes ?? NV_READ_CHUNK_BYTES;
    // Each round must read at least one byte, or the loop below would never end.
    if (!Number.isInteger(chunk) || chunk < 1 || chunk > LIMITS.nvBufferBytes) {
      throw new TpmClientError(
        "BAD_ARGUMENT",
        `nvReadAll: chunkBytes must be an integer in 1..${LIMITS.nvBufferBytes}, got ${chunk}`,
      );
    }
    const { nvPublic } = await this.nvReadPublic(nvIndex);
    const index: HandleRef = { handle: nvIndex, name: nvName(nvPublic) };
    const out = new Uint8Array(nvPublic.dataSize);
    for (let offset = 0; offset < out.length;) {
      const size = Math.min(chunk, out.length - offset);
      const data = await this.nvRead(
        authHandle === nvIndex ? index : authHandle,
        index,
        size,
        offset,
        options.auth,
      );
      if (data.length !== size)
        throw new TpmClientError("BAD_RESPONSE", `NV_Read returned ${data.length} of ${size}`);
      out.set(data, offset);
      offset += size;
    }
    return out;
  }

  async nvRead(
    authHandle: number | HandleRef,
    nvIndex: number | HandleRef,
    size: number,
    offset: number,
    auth: AuthSession = EMPTY_PASSWORD,
  ): Promise<Uint8Array> {
    const { params } = await this.execute({
      commandCode: TPM_CC.NV_Read,
      handles: [authHandle, nvIndex],
      sessions: [{ session: auth }],
      params: encode((w) => w.u16(size).u16(offset)),
    });
    return decodeExact(params, "NV_Read response", (r) => r.tpm2b("data", LIMITS.nvBufferBytes));
  }
}

/** A handle the TPM returned must be of the kind the command creates. */
function expectHandleType(handle: number, type: number, command: string): number {
  if (handleType(handle) !== type) {
    throw new TpmClientError(
      "BAD_RESPONSE",
      `${command} returned handle 0x${handle.toString(16)}, not of type 0x${type.toString(16)}`,
    );
  }
  return handle;
}
