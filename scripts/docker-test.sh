#!/usr/bin/env bash
# The real docker test (issue 12 item 8, one peer until the cluster exists): builds the image from
# docker/Dockerfile on a local Debian base, runs one peer container with its own swtpm container on
# the host's network, creates a key through the peer and fetches it, checks the container runs as
# uid 10001 with production dependencies only and reports healthy, then removes every container and
# image it created (and stops the engine if it started it). Bounded: every step has a timeout.
#
# Without a Docker engine it tries to start one (as root: dockerd --iptables=false --bridge=none,
# following shared/notes/docker.md); when none can start it prints "SKIPPED: <why>" and exits 0.
# No image is pulled: the base is built with mmdebstrap from Debian packages, plus this machine's
# Node.js 20 and npm (the base tar is cached in /var/tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d /tmp/lockbox-docker-XXXXXX)
tag="lockbox-test:$$"
containers=()
# shellcheck source=lib/docker-engine.sh
. scripts/lib/docker-engine.sh

cleanup() {
  set +e
  for c in "${containers[@]}"; do docker rm -f "$c" >/dev/null 2>&1; done
  docker_engine_cleanup
}
trap cleanup EXIT
skip() {
  echo "SKIPPED: $*"
  exit 0
}
failed() {
  echo "FAILED: $*"
  exit 1
}
step() { echo "==> $*"; }

# 1. An engine: the running one, or one started here (docker.io and mmdebstrap installed if missing).
docker_engine_start --install
# 2. The local base image: Debian bookworm with swtpm and tpm2-tools, and Node.js 20 with npm.
docker_base_image
# 3. The image, from docker/Dockerfile with that base.
docker_lockbox_image "$tag"

# 4. One peer and its swtpm, host networking, free loopback ports.
tpm_port=$(free_port)
grpc_port=$(free_port)
metrics_port=$(free_port)
state="$work/state"
mkdir -p "$state"
chown 10001:10001 "$state"
chmod 0700 "$state"
step "docker run: swtpm on 127.0.0.1:$tpm_port, peer on 127.0.0.1:$grpc_port (metrics $metrics_port)"
docker run -d --name "lockbox-tpm-$$" --network host -e SWTPM_PORT="$tpm_port" "$tag" swtpm >/dev/null
containers+=("lockbox-tpm-$$")
docker run -d --name "lockbox-peer-$$" --network host -v "$state:/var/lib/lockbox" \
  -e LOCKBOX_PEER_ID=peer-1 -e LOCKBOX_LISTEN="127.0.0.1:$grpc_port" \
  -e LOCKBOX_METRICS_LISTEN="127.0.0.1:$metrics_port" -e LOCKBOX_TPM="swtpm:127.0.0.1:$tpm_port" "$tag" >/dev/null
containers+=("lockbox-peer-$$")

fail() {
  echo "FAILED: $*"
  docker logs --tail 30 "lockbox-peer-$$" 2>&1 | sed 's/^/  peer: /'
  exit 1
}
health=""
for _ in $(seq 1 90); do
  health=$(docker inspect -f '{{.State.Health.Status}}' "lockbox-peer-$$" 2>/dev/null || echo gone)
  [ "$health" = healthy ] && break
  [ "$health" = gone ] && break
  sleep 1
done
[ "$health" = healthy ] || fail "the peer container is '$health', not healthy, after 90 s"
echo "    HEALTHCHECK: healthy"

uid=$(docker exec "lockbox-peer-$$" id -u)
[ "$uid" = 10001 ] || fail "the peer runs as uid $uid"
echo "    runs as uid $uid"
docker exec "lockbox-peer-$$" sh -c 'test ! -e /opt/lockbox/node_modules/typescript && test ! -e /opt/lockbox/node_modules/ava && test ! -e /opt/lockbox/node_modules/@bufbuild/buf' ||
  fail "dev dependencies in the image"
echo "    production dependencies only (no typescript, ava, @bufbuild/buf)"
docker exec "lockbox-peer-$$" node /opt/lockbox/dist/src/cli/main.js tpm info --tpm "swtpm:127.0.0.1:$tpm_port" >"$work/tpm.txt" 2>&1 ||
  fail "the peer container cannot reach its swtpm: $(cat "$work/tpm.txt")"
echo "    its swtpm answers: $(head -1 "$work/tpm.txt")"

# 5. A key through the peer, with the CLI of this checkout and the admin identity init wrote.
lockbox() { node "$root/dist/src/cli/main.js" "$@"; }
[ -f "$root/dist/src/cli/main.js" ] || npm run build --silent
id=$(lockbox key create --dir "$state" --project docker --scope vol-1 --name root --json |
  node -pe 'JSON.parse(require("fs").readFileSync(0)).id') || fail "key create"
first=$(lockbox key get "$id" --dir "$state" --format hex) || fail "key get"
second=$(lockbox key get "$id" --dir "$state" --format hex) || fail "key get again"
[ "${#first}" -eq 64 ] && [ "$first" = "$second" ] || fail "key material differs or is not 256 bits"
echo "    key $id created and fetched (256 bits, the same twice)"
node -e '
  fetch(process.argv[1]).then(r => r.text()).then(t => {
    const ok = /lockbox_grpc_calls_total\{[^}]*method="CreateKey",status="OK"[^}]*\} 1/.test(t);
    if (!ok) { console.error(t.split("\n").filter(l => l.includes("calls_total")).join("\n")); process.exit(1); }
  })' "http://127.0.0.1:$metrics_port/metrics" || fail "metrics do not count the CreateKey"
echo "    /metrics counts it"

echo "PASSED: docker image built on lockbox-base:local, one peer with its swtpm served a key"
