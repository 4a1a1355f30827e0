/** Role checks shared by every transport (call-pipeline.ts runs them). */
import { LockboxError } from "../errors.js";
import type { Caller } from "../identity/caller.js";

/** Operator calls (AdminService) need the admin role. */
export function requireAdmin(caller: Caller): void {
  if (caller.role !== "admin") {
    throw new LockboxError("PERMISSION_DENIED", `identity ${caller.identity} does not have the admin role`);
  }
}
