/**
 * The JSON shapes of Barbican's v1 API, exactly as python-barbicanclient and Castellan read them.
 * barbicanclient builds its objects straight from these documents and fails on a key it does not
 * know, so a secret carries only name, expiration, algorithm, bit_length, mode, secret_ref,
 * created, updated, content_types, status, secret_type and (microversion 1.1) consumers; an order
 * only status, created, updated, order_ref, secret_ref, sub_status, sub_status_message, creator_id,
 * type and meta. Times carry no zone, as Barbican writes them.
 *
 * `name`: lockbox requires a name on every key, and barbicanclient re-reads a secret's metadata on
 * every attribute access while its name is empty (14 requests for one Castellan get). A secret
 * stored without a name is named UNNAMED_SECRET_NAME, so a Castellan get costs two requests.
 */
import type { KeyMeta } from "../keys/key-model.js";
import type { Order } from "./order-store.js";

export const UNNAMED_SECRET_NAME = "unnamed";

/** A key as the REST API shows it. */
export type SecretView = KeyMeta;

export interface ConsumerJson {
  service: string;
  resource_type: string;
  resource_id: string;
}

export const barbicanTime = (d: Date): string => d.toISOString().replace(/Z$/, "");

/**
 * The media type a secret's payload is served as by default: always octet-stream, since the key
 * model keeps bytes, not the type they were sent as (barbicanclient and Castellan read the bytes
 * as sent either way; `Accept: text/plain` gets them as text when they are UTF-8).
 */
export function contentTypeOf(_meta: SecretView): "application/octet-stream" {
  return "application/octet-stream";
}

export function secretJson(
  base: string,
  meta: SecretView,
  consumers: readonly ConsumerJson[] | undefined,
): Record<string, unknown> {
  const out: Record<string, unknown> = {
    secret_ref: `${base}/v1/secrets/${meta.id}`,
    name: meta.name,
    algorithm: meta.algorithm === "" ? null : meta.algorithm,
    bit_length: meta.bitLength === 0 ? null : meta.bitLength,
    mode: null,
    secret_type: meta.secretType,
    expiration: meta.expiresAt === undefined ? null : barbicanTime(meta.expiresAt),
    created: barbicanTime(meta.createdAt),
    updated: barbicanTime(meta.updatedAt),
    status: "ACTIVE",
    content_types: { default: contentTypeOf(meta) },
  };
  if (consumers !== undefined) out.consumers = consumers;
  return out;
}

export function orderJson(base: string, order: Order): Record<string, unknown> {
  const created = barbicanTime(new Date(order.createdAtMs));
  return {
    type: "key",
    meta: order.meta,
    order_ref: `${base}/v1/orders/${order.id}`,
    secret_ref: `${base}/v1/secrets/${order.secretId}`,
    status: "ACTIVE",
    sub_status: "Unknown",
    sub_status_message: "Unknown",
    created,
    updated: created,
    creator_id: order.creator,
  };
}

/** `GET /` (300) and `GET /v1` (200): v1, microversions 1.0 to 1.1. */
export function versionJson(base: string): Record<string, unknown> {
  return {
    id: "v1",
    status: "stable",
    min_version: "1.0",
    max_version: "1.1",
    links: [
      { rel: "self", href: `${base}/v1/` },
      { rel: "describedby", type: "text/html", href: "https://docs.openstack.org/" },
    ],
    "media-types": [{ base: "application/json", type: "application/vnd.openstack.key-manager-v1+json" }],
  };
}
