/**
 * A running 64-bit FNV-1a hash (two 32-bit lanes) of the simulation's event log, so two replays of one
 * seed can be compared cheaply; the lines themselves are kept only on request.
 */
export class TraceHash {
  private h1 = 0x811c9dc5;
  private h2 = 0x01000193 ^ 0x5bd1e995;
  count = 0;
  readonly lines: string[] | null;

  constructor(keepLines: boolean) {
    this.lines = keepLines ? [] : null;
  }

  add(line: string): void {
    this.count++;
    this.lines?.push(line);
    let h1 = this.h1;
    let h2 = this.h2;
    for (let i = 0; i < line.length; i++) {
      const c = line.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 0x01000193);
      h2 = Math.imul(h2 ^ c, 0x01000193) ^ (h2 >>> 15);
    }
    h1 = Math.imul(h1 ^ 10, 0x01000193);
    this.h1 = h1 >>> 0;
    this.h2 = h2 >>> 0;
  }

  digest(): string {
    return `${this.h1.toString(16).padStart(8, "0")}${this.h2.toString(16).padStart(8, "0")}:${this.count}`;
  }
}
