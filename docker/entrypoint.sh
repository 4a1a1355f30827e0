#!/bin/sh
# The image's entry point.
#   (no arguments)  initialise the peer's directory on first start, then serve in the foreground
#   swtpm           run a simulated TPM instead (a compose file's per-peer TPM service):
#                   state in /var/lib/swtpm, listening on $SWTPM_PORT and $SWTPM_PORT+1 on 127.0.0.1
#   anything else   run `lockbox` with those arguments (backup, restore, status, ...)
set -eu
cli=/opt/lockbox/dist/src/cli/main.js
dir="${LOCKBOX_DIR:-/var/lib/lockbox}"
case "${1:-serve}" in
  swtpm)
    port="${SWTPM_PORT:-2321}"
    exec swtpm socket --tpm2 --tpmstate dir=/var/lib/swtpm \
      --server type=tcp,port="$port",bindaddr=127.0.0.1 \
      --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 \
      --flags not-need-init,startup-clear
    ;;
  serve)
    if [ ! -f "$dir/config.json" ]; then
      node "$cli" init --dir "$dir" --peer-id "${LOCKBOX_PEER_ID:-peer-1}" --listen "${LOCKBOX_LISTEN:-127.0.0.1:7443}"
    fi
    exec node "$cli" serve --dir "$dir" --json
    ;;
  *)
    exec node "$cli" "$@"
    ;;
esac
