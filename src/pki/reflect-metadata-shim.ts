/**
 * The few `Reflect` metadata functions that tsyringe (a dependency of
 * @peculiar/x509) insists on at load time. The `reflect-metadata` package is
 * not installed, and x509 only registers a handful of classes, so a small
 * WeakMap-backed stand-in is enough. Installed only if nothing else did.
 */
type MetadataMap = Map<unknown, unknown>;
const store = new WeakMap<object, Map<string | symbol | undefined, MetadataMap>>();

function ownMap(
  target: object,
  property: string | symbol | undefined,
  create: boolean,
): MetadataMap | undefined {
  let byProperty = store.get(target);
  if (byProperty === undefined) {
    if (!create) return undefined;
    byProperty = new Map();
    store.set(target, byProperty);
  }
  let map = byProperty.get(property);
  if (map === undefined && create) {
    map = new Map();
    byProperty.set(property, map);
  }
  return map;
}

const shim = {
  defineMetadata(key: unknown, value: unknown, target: object, property?: string | symbol): void {
    ownMap(target, property, true)!.set(key, value);
  },
  getOwnMetadata(key: unknown, target: object, property?: string | symbol): unknown {
    return ownMap(target, property, false)?.get(key);
  },
  getMetadata(key: unknown, target: object, property?: string | symbol): unknown {
    // Walks the prototype chain like reflect-metadata; bounded by the chain's length.
    for (let t: object | null = target; t !== null; t = Object.getPrototypeOf(t) as object | null) {
      const map = ownMap(t, property, false);
      if (map?.has(key)) return map.get(key);
    }
    return undefined;
  },
  hasMetadata(key: unknown, target: object, property?: string | symbol): boolean {
    return shim.getMetadata(key, target, property) !== undefined;
  },
};

const reflect = Reflect as unknown as Record<string, unknown>;
if (typeof reflect["getMetadata"] !== "function") {
  for (const [name, fn] of Object.entries(shim)) reflect[name] = fn;
}
