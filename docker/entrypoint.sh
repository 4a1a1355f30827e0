#!/bin/sh
# Initialise the peer's directory on first start, then serve in the foreground.
set -eu
dir=/var/lib/lockbox
if [ ! -f "$dir/config.json" ]; then
  node /opt/lockbox/dist/src/cli/main.js init --dir "$dir" --peer-id "${LOCKBOX_PEER_ID:-peer-1}" --listen 0.0.0.0:7443
fi
exec node /opt/lockbox/dist/src/cli/main.js serve --dir "$dir" --listen 0.0.0.0:7443
