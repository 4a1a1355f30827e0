/** The swtpm manager: provision state directories from a project-local CA, run and stop simulators. */
export { SwtpmError, type SwtpmErrorCode } from "./swtpm-error.js";
export {
  type LocalCaCertPaths,
  type LocalCaFiles,
  localCaCertPaths,
  writeLocalCaConfig,
} from "./local-ca.js";
export { type ProvisionOptions, type ProvisionedSwtpm, provisionSwtpm } from "./provision.js";
export { type RunningSwtpm, type StartSwtpmOptions, SWTPM_HOST, startSwtpm } from "./swtpm-process.js";
