import type { Mutant, MutatorName } from "./mutants.js";

/**
 * Mutants that cannot change behaviour (equivalent mutants), left out of the score with the reason.
 * Matched by file, the trimmed source line, mutator, original and replacement (not by line number, so
 * the list survives edits elsewhere in the file). Keep it short and honest: a mutant that a test could
 * kill does not belong here.
 */
export interface EquivalentMutant {
  file: string;
  lineText: string;
  mutator: MutatorName;
  original: string;
  replacement: string;
  reason: string;
}

export const EQUIVALENT_MUTANTS: EquivalentMutant[] = [];

export function equivalentReason(m: Mutant): string | undefined {
  return EQUIVALENT_MUTANTS.find(
    (e) =>
      e.file === m.file &&
      e.lineText === m.lineText &&
      e.mutator === m.mutator &&
      e.original === m.original &&
      e.replacement === m.replacement,
  )?.reason;
}
