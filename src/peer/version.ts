/** lockbox's version, from package.json (this file runs from dist/src/peer/). */
import { readFileSync } from "node:fs";

export const LOCKBOX_VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
      version?: unknown;
    };
    return typeof pkg.version === "string" ? pkg.version : "unknown";
  } catch {
    return "unknown";
  }
})();
