/**
 * Time comes in through this seam: tests inject a fixed or stepping clock,
 * and nothing that decides on time (expiry, audit windows, purge delays)
 * reads the global clock itself. It imports nothing so every layer may use it.
 */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
