/** Failures of provisioning, starting or stopping a swtpm simulator. Branch on `code`. */
export type SwtpmErrorCode =
  | "bad-argument" // a path or option the caller gave is unusable
  | "tool-missing" // swtpm or swtpm_setup is not installed
  | "setup-failed" // swtpm_setup exited non-zero or did not write the EK certificates
  | "start-failed" // swtpm exited during start-up for a reason other than a taken port
  | "no-free-port" // every port pair tried was taken
  | "not-answering" // swtpm runs but its data port did not answer a command in time
  | "stop-failed"; // swtpm did not exit even after SIGKILL

export class SwtpmError extends Error {
  override readonly name = "SwtpmError";
  constructor(
    readonly code: SwtpmErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
