/**
 * Field readers for the control state's JSON shapes (commands and snapshot records). Every reader
 * checks one field's type and bound and throws ControlShapeInvalid naming the field; `exactKeys`
 * refuses fields nobody asked for, so a newer or hostile shape is refused rather than half-read.
 */
export class ControlShapeInvalid extends Error {
  override readonly name = "ControlShapeInvalid";
  readonly code = "CONTROL_SHAPE_INVALID";
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}

export type Obj = Record<string, unknown>;

export function object(value: unknown, field: string): Obj {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ControlShapeInvalid(field, "must be an object");
  }
  return value as Obj;
}

/** Refuses any key of `o` outside `allowed` (optional keys included). */
export function exactKeys(o: Obj, field: string, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw new ControlShapeInvalid(`${field}.${k}`, "is not a known field");
  }
}

export function str(o: Obj, key: string, field: string, max: number, pattern?: RegExp): string {
  const v = o[key];
  if (typeof v !== "string") throw new ControlShapeInvalid(`${field}.${key}`, "must be a string");
  if (v.length > max) throw new ControlShapeInvalid(`${field}.${key}`, `longer than ${max} characters`);
  if (pattern !== undefined && !pattern.test(v)) {
    throw new ControlShapeInvalid(`${field}.${key}`, "has characters or a form not allowed");
  }
  return v;
}

export function int(o: Obj, key: string, field: string, min: number, max: number): number {
  const v = o[key];
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw new ControlShapeInvalid(`${field}.${key}`, `must be an integer in ${min}..${max}`);
  }
  return v;
}

export function bool(o: Obj, key: string, field: string): boolean {
  const v = o[key];
  if (typeof v !== "boolean") throw new ControlShapeInvalid(`${field}.${key}`, "must be true or false");
  return v;
}

export function oneOf<T extends string>(o: Obj, key: string, field: string, values: readonly T[]): T {
  const v = o[key];
  if (typeof v !== "string" || !(values as readonly string[]).includes(v)) {
    throw new ControlShapeInvalid(`${field}.${key}`, `must be one of ${values.join(", ")}`);
  }
  return v as T;
}

export function array(o: Obj, key: string, field: string, max: number): unknown[] {
  const v = o[key];
  if (!Array.isArray(v)) throw new ControlShapeInvalid(`${field}.${key}`, "must be an array");
  if (v.length > max) throw new ControlShapeInvalid(`${field}.${key}`, `has more than ${max} items`);
  return v;
}

/** Base64 (standard alphabet, padded), decoded size at most `bytesMax`. */
export function base64(o: Obj, key: string, field: string, bytesMax: number): string {
  const v = str(o, key, field, Math.ceil(bytesMax / 3) * 4, BASE64);
  return v;
}

export const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** Lower-case hex of a SHA-256 digest. */
export const SHA256_HEX = /^[0-9a-f]{64}$/;
/** A certificate serial as node prints it: upper-case hex, no separators. */
export const SERIAL_HEX = /^[0-9A-F]{1,64}$/;
/** Printable text without control characters (reasons, zones). */
export const PRINTABLE = /^[\x20-\x7e]*$/;
