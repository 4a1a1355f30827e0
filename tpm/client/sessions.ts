/**
 * Authorization sessions (TPM 2.0 Part 1 §19): the password session, and
 * HMAC / policy sessions with their session key, rolling nonces, command and
 * response HMACs and AES-CFB parameter encryption.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { KdfHash } from "../crypto/kdf.js";
import { kdfa } from "../crypto/kdf.js";
import type { TpmReader } from "../marshal/reader.js";
import { encode } from "../marshal/writer.js";
import { TPMA_SESSION, TPM_ALG_ID, TPM_RS_PW, TPM_SE } from "../spec/constants.js";
import { digestSize, nodeHashName } from "../spec/hash.js";
import { LIMITS } from "../spec/limits.js";
import { tpmHash } from "../spec/name.js";
import type { TpmtSymDef } from "../spec/schemes.js";
import { cfbDecrypt, cfbEncrypt } from "./param-crypto.js";
import { TpmClientError } from "./tpm-error.js";

/** What a session needs to know about the command it authorizes. */
export interface CommandContext {
  readonly commandCode: number;
  /** Names of every handle in the handle area, in order (undefined when no HMAC is computed). */
  readonly names: () => readonly Uint8Array[];
}

/** Per-use options of a session in one command. */
export interface SessionUse {
  /** Encrypt the first command parameter (TPMA_SESSION.decrypt: the TPM decrypts it). */
  readonly decryptCommand?: boolean;
  /** Ask the TPM to encrypt the first response parameter (TPMA_SESSION.encrypt). */
  readonly encryptResponse?: boolean;
  /**
   * The authValue of the entity an HMAC session authorizes (empty by default).
   * It joins the session key in the HMAC and parameter-encryption keys.
   */
  readonly entityAuth?: Uint8Array;
}

/** One entry of a command's authorization area. */
export interface AuthSession {
  readonly handle: number;
  /** Starts a command: picks a fresh caller nonce. */
  begin(use: SessionUse): void;
  /** Encrypts the first parameter's contents when `use.decryptCommand`. */
  encryptParameter(plain: Uint8Array): Uint8Array;
  /** The TPMS_AUTH_COMMAND for this command, given the (possibly encrypted) parameter bytes. */
  commandAuth(ctx: CommandContext, params: Uint8Array): Uint8Array;
  /** Reads and checks this session's TPMS_AUTH_RESPONSE. */
  checkResponseAuth(ctx: CommandContext, params: Uint8Array, r: TpmReader): void;
  /** Decrypts the first response parameter's contents when `use.encryptResponse`. */
  decryptParameter(cipher: Uint8Array): Uint8Array;
  readonly wantsDecryptCommand: boolean;
  readonly wantsEncryptResponse: boolean;
}

/** TPM_RS_PW with a plaintext password (the entity's authValue, usually empty). */
export class PasswordSession implements AuthSession {
  readonly handle = TPM_RS_PW;
  readonly wantsDecryptCommand = false;
  readonly wantsEncryptResponse = false;

  constructor(private readonly password: Uint8Array = new Uint8Array(0)) {}

  begin(use: SessionUse): void {
    if (use.decryptCommand || use.encryptResponse) {
      throw new TpmClientError("BAD_ARGUMENT", "a password session cannot encrypt parameters");
    }
    if (use.entityAuth !== undefined) {
      throw new TpmClientError("BAD_ARGUMENT", "a password session carries the password itself");
    }
  }

  encryptParameter(plain: Uint8Array): Uint8Array {
    return plain;
  }

  decryptParameter(cipher: Uint8Array): Uint8Array {
    return cipher;
  }

  commandAuth(): Uint8Array {
    return encode((w) => w.u32(TPM_RS_PW).u16(0).u8(TPMA_SESSION.continueSession).tpm2b(this.password));
  }

  checkResponseAuth(_ctx: CommandContext, _params: Uint8Array, r: TpmReader): void {
    r.tpm2b("TPMS_AUTH_RESPONSE.nonce", LIMITS.digestBytes);
    r.u8("TPMS_AUTH_RESPONSE.sessionAttributes");
    r.tpm2b("TPMS_AUTH_RESPONSE.hmac", LIMITS.digestBytes);
  }
}

/** The empty password, for entities whose authValue is empty (hierarchies, our keys). */
export const EMPTY_PASSWORD: AuthSession = new PasswordSession();

export type SessionType = "hmac" | "policy" | "trial";

export const SESSION_TYPE_CODE: Record<SessionType, number> = {
  hmac: TPM_SE.HMAC,
  policy: TPM_SE.POLICY,
  trial: TPM_SE.TRIAL,
};

/**
 * An HMAC or policy session the TPM has started, unbound. An HMAC session's
 * key is sessionKey || the entity's authValue (SessionUse.entityAuth); a
 * policy session here never runs PolicyAuthValue, so its key is the session
 * key alone.
 */
export class TpmSession implements AuthSession {
  private nonceCaller: Uint8Array;
  private flushed = false;
  private use: SessionUse = {};
  readonly hashName: KdfHash;

  constructor(
    readonly handle: number,
    readonly type: SessionType,
    readonly authHash: number,
    readonly symmetric: TpmtSymDef,
    /** Empty for an unsalted, unbound session. */
    private readonly sessionKey: Uint8Array,
    nonceCaller: Uint8Array,
    private nonceTpm: Uint8Array,
  ) {
    this.nonceCaller = nonceCaller;
    this.hashName = kdfHashName(authHash);
  }

  /** Logs and error reports show the handle only, never the session key or nonces. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `TpmSession(0x${this.handle.toString(16)}, ${this.type}${this.salted ? ", salted" : ""})`;
  }

  toJSON(): { handle: number; type: SessionType; salted: boolean } {
    return { handle: this.handle, type: this.type, salted: this.salted };
  }

  /** Salted (or bound) sessions have a secret key; only those protect parameters. */
  get salted(): boolean {
    return this.sessionKey.length > 0;
  }

  get canEncrypt(): boolean {
    return this.salted && this.symmetric.algorithm !== TPM_ALG_ID.NULL;
  }

  get isFlushed(): boolean {
    return this.flushed;
  }

  get wantsDecryptCommand(): boolean {
    return this.use.decryptCommand === true;
  }

  get wantsEncryptResponse(): boolean {
    return this.use.encryptResponse === true;
  }

  markFlushed(): void {
    this.flushed = true;
  }

  begin(use: SessionUse): void {
    if (use.entityAuth !== undefined && use.entityAuth.length > 0 && this.type !== "hmac") {
      throw new TpmClientError("BAD_ARGUMENT", "an entity authValue is used with HMAC sessions only");
    }
    if (this.flushed)
      throw new TpmClientError("SESSION_CLOSED", `session 0x${this.handle.toString(16)} was flushed`);
    if ((use.decryptCommand || use.encryptResponse) && !this.canEncrypt) {
      throw new TpmClientError(
        "BAD_ARGUMENT",
        "parameter encryption needs a salted session with a symmetric cipher",
      );
    }
    this.use = use;
    this.nonceCaller = new Uint8Array(randomBytes(this.nonceCaller.length));
  }

  /** sessionKey || authValue, the authValue without trailing zero octets as the TPM stores it. */
  private key(): Uint8Array {
    let auth = this.use.entityAuth ?? new Uint8Array(0);
    let end = auth.length;
    while (end > 0 && auth[end - 1] === 0) end--;
    auth = auth.subarray(0, end);
    if (auth.length === 0) return this.sessionKey;
    const key = new Uint8Array(this.sessionKey.length + auth.length);
    key.set(this.sessionKey);
    key.set(auth, this.sessionKey.length);
    return key;
  }

  private attributes(): number {
    let a = TPMA_SESSION.continueSession;
    if (this.use.decryptCommand) a |= TPMA_SESSION.decrypt;
    if (this.use.encryptResponse) a |= TPMA_SESSION.encrypt;
    return a;
  }

  encryptParameter(plain: Uint8Array): Uint8Array {
    return cfbEncrypt(this.hashName, this.symmetric, this.key(), this.nonceCaller, this.nonceTpm, plain);
  }

  decryptParameter(cipher: Uint8Array): Uint8Array {
    return cfbDecrypt(this.hashName, this.symmetric, this.key(), this.nonceTpm, this.nonceCaller, cipher);
  }

  commandAuth(ctx: CommandContext, params: Uint8Array): Uint8Array {
    const attrs = this.attributes();
    let hmac: Uint8Array = new Uint8Array(0);
    // With an empty key the TPM accepts (and itself uses) an empty HMAC.
    if (this.key().length > 0) {
      const cpHash = tpmHash(
        this.authHash,
        encode((w) => w.u32(ctx.commandCode)),
        ...ctx.names(),
        params,
      );
      hmac = this.hmac(cpHash, this.nonceCaller, this.nonceTpm, attrs);
    }
    return encode((w) => w.u32(this.handle).tpm2b(this.nonceCaller).u8(attrs).tpm2b(hmac));
  }

  checkResponseAuth(ctx: CommandContext, params: Uint8Array, r: TpmReader): void {
    const nonceTpm = r.tpm2b("TPMS_AUTH_RESPONSE.nonce", LIMITS.digestBytes);
    const attrs = r.u8("TPMS_AUTH_RESPONSE.sessionAttributes");
    const hmac = r.tpm2b("TPMS_AUTH_RESPONSE.hmac", LIMITS.digestBytes);
    if (this.key().length > 0 || hmac.length > 0) {
      const rpHash = tpmHash(
        this.authHash,
        encode((w) => w.u32(0).u32(ctx.commandCode)),
        params,
      );
      const expected = this.hmac(rpHash, nonceTpm, this.nonceCaller, attrs);
      if (expected.length !== hmac.length || !timingSafeEqual(expected, hmac)) {
        throw new TpmClientError(
          "RESPONSE_HMAC",
          `response HMAC of session 0x${this.handle.toString(16)} does not verify`,
        );
      }
    }
    this.nonceTpm = nonceTpm;
  }

  private hmac(pHash: Uint8Array, nonceNewer: Uint8Array, nonceOlder: Uint8Array, attrs: number): Uint8Array {
    const h = createHmac(this.hashName, this.key());
    h.update(pHash).update(nonceNewer).update(nonceOlder).update(Uint8Array.of(attrs));
    return new Uint8Array(h.digest());
  }
}

export function kdfHashName(hashAlg: number): KdfHash {
  const name = nodeHashName(hashAlg);
  if (name !== "sha1" && name !== "sha256" && name !== "sha384" && name !== "sha512") {
    throw new TpmClientError("UNSUPPORTED", `hash 0x${hashAlg.toString(16)} is not supported for sessions`);
  }
  return name;
}

/** sessionKey = KDFa(authHash, salt, "ATH", nonceTPM, nonceCaller, digest bits); empty when unsalted. */
export function deriveSessionKey(
  authHash: number,
  salt: Uint8Array,
  nonceTpm: Uint8Array,
  nonceCaller: Uint8Array,
): Uint8Array {
  if (salt.length === 0) return new Uint8Array(0);
  const bytes = digestSize(authHash)!;
  return kdfa(kdfHashName(authHash), salt, "ATH", nonceTpm, nonceCaller, bytes * 8);
}
