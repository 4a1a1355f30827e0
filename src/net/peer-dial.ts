/**
 * Where this peer dials another peer: at the member address the control state records for it, unless
 * config.json `peerDialOverrides` names another HOST:PORT for that peer id (a NAT or a tunnel in
 * between; the fault tests put a TCP proxy on every link A->B this way).
 *
 * An override moves only the TCP destination. The peer's identity is checked as before: the server's
 * certificate must chain to the cluster CA and carry the target's peer id (each channel checks that
 * against the id it meant to reach, never against an address), and the host name check stays on the
 * member address's host, not on the override's (gRPC's ssl_target_name_override).
 */
import { parseHostPort } from "./host-port.js";

/** Peer id -> the HOST:PORT to dial for it instead of its member address. */
export type PeerDialOverrides = Readonly<Record<string, string>>;

export interface PeerDial {
  /** What the channel connects to. */
  target: string;
  /** Channel options that keep the TLS name check on the member's host when `target` is an override. */
  channelOptions: Record<string, string>;
}

export function peerDial(
  overrides: PeerDialOverrides | undefined,
  id: string,
  memberAddress: string,
): PeerDial {
  const override = overrides !== undefined && Object.hasOwn(overrides, id) ? overrides[id] : undefined;
  if (override === undefined || override === memberAddress)
    return { target: memberAddress, channelOptions: {} };
  const host = parseHostPort(memberAddress)?.host;
  return {
    target: override,
    channelOptions: host === undefined ? {} : { "grpc.ssl_target_name_override": host },
  };
}

/** Only the address (for channels that name the server "localhost" whatever they dial). */
export function peerDialAddress(
  overrides: PeerDialOverrides | undefined,
  id: string,
  memberAddress: string,
): string {
  return peerDial(overrides, id, memberAddress).target;
}
