/**
 * Who is calling the REST API, in one of two ways (issue 11 item 2), never from a bare header:
 *
 * - keystone: `X-Auth-Token`, validated by Keystone (keystone-validator.ts). The token's project is
 *   the lockbox project; a token with one of the configured roles makes a service caller of that
 *   project, one without gets a caller of no project (its calls are refused by the key service).
 *   `X-Project-Id` is ignored: the token says which project.
 * - mtls: a client certificate of the cluster CA (a lockbox identity). `X-Project-Id` picks one of
 *   the identity's projects (any project for an admin identity); an identity of exactly one project
 *   may leave it out. A project the identity may not use is PERMISSION_DENIED.
 *
 * Either way the caller acts in exactly one project (RestCaller.project): its `projects` are that
 * one, its role "service", so an admin identity acting through the REST API sees one project's
 * secrets, like a Barbican project member. A request with neither a token nor a certificate, or with
 * only `X-Project-Id`, is UNAUTHENTICATED.
 */
import type * as http from "node:http";
import type { TLSSocket } from "node:tls";
import { LockboxError } from "../errors.js";
import type { Caller } from "../identity/caller.js";
import { PROJECT_PATTERN } from "../keys/validation.js";
import type { ClientCertificateVerifier } from "../pki/client-certificate-verifier.js";
import type { Clock } from "../time/clock.js";
import type { KeystoneValidator } from "./keystone-validator.js";

export interface RestCaller extends Caller {
  /** The one project this call acts in. */
  readonly project: string;
}

export interface RestAuthenticator {
  readonly keystone?: KeystoneValidator;
  readonly verifier?: ClientCertificateVerifier;
  readonly clock: Clock;
}

export async function authenticateRest(
  req: http.IncomingMessage,
  auth: RestAuthenticator,
): Promise<RestCaller> {
  const token = req.headers["x-auth-token"];
  if (auth.keystone !== undefined && typeof token === "string" && token.length > 0) {
    const id = await auth.keystone.validate(token);
    return {
      identity: `keystone:${id.userId}`,
      role: "service",
      projects: id.roles.length > 0 ? [id.projectId] : [],
      project: id.projectId,
    };
  }
  if (auth.verifier !== undefined) {
    const raw = clientCertificate(req);
    if (raw !== undefined)
      return narrow(auth.verifier.verify(raw, auth.clock.now()), req.headers["x-project-id"]);
  }
  const how = [
    ...(auth.keystone !== undefined ? ["an X-Auth-Token from Keystone"] : []),
    ...(auth.verifier !== undefined ? ["a client certificate issued by the cluster CA"] : []),
  ].join(" or ");
  throw new LockboxError("UNAUTHENTICATED", `${how} is required`);
}

function clientCertificate(req: http.IncomingMessage): Buffer | undefined {
  const socket = req.socket as Partial<TLSSocket>;
  if (socket.authorized !== true || typeof socket.getPeerCertificate !== "function") return undefined;
  const raw = socket.getPeerCertificate().raw;
  return raw instanceof Buffer && raw.length > 0 ? raw : undefined;
}

function narrow(caller: Caller, header: string | string[] | undefined): RestCaller {
  if (Array.isArray(header))
    throw new LockboxError("INVALID_ARGUMENT", "X-Project-Id: sent more than once", "X-Project-Id");
  let project: string;
  if (header === undefined || header === "") {
    if (caller.role === "service" && caller.projects.length === 1) project = caller.projects[0]!;
    else
      throw new LockboxError(
        "INVALID_ARGUMENT",
        "X-Project-Id: is required for this identity",
        "X-Project-Id",
      );
  } else {
    if (!PROJECT_PATTERN.test(header))
      throw new LockboxError("INVALID_ARGUMENT", "X-Project-Id: is not a project name", "X-Project-Id");
    if (caller.role !== "admin" && !caller.projects.includes(header))
      throw new LockboxError(
        "PERMISSION_DENIED",
        `identity ${caller.identity} may not use project ${header}`,
      );
    project = header;
  }
  return { identity: caller.identity, role: "service", projects: [project], project };
}
