/**
 * The most peer addresses a peer's config names in one map (seedPeers, peerDialOverrides). Here, not
 * in src/config, because the control plane (which writes a joiner's seedPeers) must not import
 * src/config: config -> server -> controlplane would be a folder cycle.
 */
export const PEER_ADDRESSES_MAX = 64;
