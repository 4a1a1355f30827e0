#!/usr/bin/env bash
# The real multi-node docker test (issue 12 item 8): three lockbox peers, each with its own swtpm,
# run by docker/compose.yaml on the host's network, as ONE cluster joined by TPM attestation.
#
#   1. a Docker engine (the running one, or `dockerd --iptables=false --bridge=none` started here,
#      as root) and a local Debian base image (mmdebstrap, plus this machine's Node.js 20);
#   2. the image, from docker/Dockerfile with BASE_IMAGE=lockbox-base:local;
#   3. the cluster's state, created on the host by `lockbox dev-cluster start` (three provisioned
#      swtpm states, peer-1 initialised with its CMK sealed to its swtpm, peer-2 and peer-3 enrolled
#      and joined by attestation), then stopped: the containers take over exactly that state;
#   4. `docker-compose up`: tpm-1..3 and peer-1..3 containers on that state, on free loopback ports;
#      every peer unseals its master key from its own swtpm container and reports healthy;
#   5. through different peers: the control state agrees (3 active members, a leader), keys are
#      created and fetched, an identity issued through peer-1 works on peer-3; every key created
#      through one peer is fetched through another with the same material (keys are replicated:
#      `lockbox dev-cluster start` turns replication on);
#   6. peer-3's container is killed (SIGKILL): peers 1 and 2 still serve every key they served,
#      including the one created through peer-3, and the control state still commits (an identity
#      issued with one voter down);
#   7. everything it created is removed (containers, volumes, image, state; the engine if it
#      started it). Every step is bounded. It prints the time each phase took.
#
# When no engine can start it prints "docker compose test: SKIPPED: <why>" and exits 0; every other
# failure prints "docker compose test: FAILED: <what>" and exits 1. `scripts/dev test` runs it after
# the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
began=$(date +%s)
work=$(mktemp -d /tmp/lockbox-compose-XXXXXX)
project="lockboxcompose$$"
tag="lockbox-compose-test:$$"
compose_up=""
export LOCKBOX_IMAGE="$tag"
# shellcheck source=lib/docker-engine.sh
. scripts/lib/docker-engine.sh

elapsed() { echo "$(($(date +%s) - began)) s"; }
step() { echo "==> [$(elapsed)] $*"; }
skip() {
  echo "docker compose test: SKIPPED: $*"
  exit 0
}
failed() {
  echo "docker compose test: FAILED: $*"
  exit 1
}
compose() { timeout 180 docker-compose -p "$project" -f "$root/docker/compose.yaml" "$@"; }
cleanup() {
  trap - ERR
  set +e
  if [ -n "$compose_up" ]; then compose down -v --remove-orphans >/dev/null 2>&1; fi
  node "$root/dist/src/cli/main.js" dev-cluster stop --dir "$work/dev" >/dev/null 2>&1
  docker_engine_cleanup
}
trap cleanup EXIT
# A signal ends the script through exit, so the EXIT trap removes what it started.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'echo "docker compose test: FAILED: line $LINENO: $BASH_COMMAND"' ERR

# 1. An engine and the base image.
docker_engine_start
command -v docker-compose >/dev/null || skip "no docker-compose (Debian package docker-compose)"
command -v swtpm >/dev/null || skip "no swtpm on the host to provision the TPM states"
docker_base_image

# 2. The image.
docker_lockbox_image "$tag"

# 3. The cluster's state: three swtpms, peer-1 founded, peer-2 and peer-3 joined by attestation.
[ -f "$root/dist/src/cli/main.js" ] || npm run build --silent
lockbox() { node "$root/dist/src/cli/main.js" "$@"; }
step "lockbox dev-cluster start (on the host): the state the containers will run"
timeout 300 node "$root/dist/src/cli/main.js" dev-cluster start --dir "$work/dev" --json >"$work/dev-start.json" 2>"$work/dev-start.log" || {
  tail -20 "$work/dev-start.log"
  echo "docker compose test: FAILED: dev-cluster start"
  exit 1
}
lockbox dev-cluster stop --dir "$work/dev" >/dev/null
declare -A addr
for i in 1 2 3; do
  read -r address tpm_port < <(node -e '
    const l = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const p = l.peers[Number(process.argv[2]) - 1];
    console.log(p.address, p.swtpmPort);' "$work/dev/layout.json" "$i")
  addr[$i]=$address
  export "PEER_${i}_PORT=${address##*:}" "TPM_${i}_PORT=$tpm_port" "PEER_${i}_METRICS_PORT=$(free_port)"
  export "PEER_${i}_STATE=$work/dev/peer-$i" "TPM_${i}_STATE=$work/dev/tpm/peer-$i"
  chown -R 10001:10001 "$work/dev/peer-$i" "$work/dev/tpm/peer-$i"
done
conn=(--ca "$work/dev/ca.crt" --cert "$work/dev/admin.crt" --key "$work/dev/admin.key")

# 4. The compose file runs it.
step "docker-compose up: tpm-1..3 and peer-1..3 on 127.0.0.1 (peers ${addr[1]} ${addr[2]} ${addr[3]})"
compose_up=1
compose up -d --no-build >"$work/compose-up.log" 2>&1 || {
  cat "$work/compose-up.log"
  echo "docker compose test: FAILED: docker-compose up"
  exit 1
}
fail() {
  echo "docker compose test: FAILED: $*"
  for s in peer-1 peer-2 peer-3; do compose logs --tail 15 "$s" 2>&1 | sed "s/^/  /"; done
  exit 1
}
for i in 1 2 3; do
  health=""
  for _ in $(seq 1 120); do
    cid=$(compose ps -q "peer-$i")
    health=$(docker inspect -f '{{.State.Health.Status}}' "$cid" 2>/dev/null || echo gone)
    [ "$health" = healthy ] && break
    sleep 1
  done
  [ "$health" = healthy ] || fail "peer-$i is '$health', not healthy, after 120 s"
done
echo "    3 peer containers healthy (each unsealed its master key from its own swtpm container)"
[ "$(docker exec "$(compose ps -q peer-2)" id -u)" = 10001 ] || fail "a peer runs as root"

# 5. One cluster, reached through different peers.
members() {
  lockbox peer list --endpoint "$1" "${conn[@]}" --json | node -pe '
    const r = JSON.parse(require("fs").readFileSync(0, "utf8"));
    `${r.peers.filter((p) => p.state === "active").length} ${r.leader || "-"}`'
}
view=""
for _ in $(seq 1 60); do
  view=$(members "${addr[3]}" 2>/dev/null || true)
  [[ "$view" == 3\ peer-* ]] && break
  sleep 1
done
[[ "$view" == 3\ peer-* ]] || fail "peer-3 does not see 3 active members and a leader: '$view'"
echo "    control state through peer-3: 3 active members, leader ${view#3 }"

declare -A key_at material
for i in 1 2 3; do
  id=$(lockbox key create --endpoint "${addr[$i]}" "${conn[@]}" --project compose --scope "vol-$i" --name root --field id) ||
    fail "key create through peer-$i"
  key_at[$i]=$id
  material[$i]=$(lockbox key get "$id" --endpoint "${addr[$i]}" "${conn[@]}" --format hex) || fail "key get through peer-$i"
  [ "${#material[$i]}" -eq 64 ] || fail "key through peer-$i is not 256 bits"
done
echo "    a key created and fetched through each of the 3 peers"
lockbox identity issue --endpoint "${addr[1]}" "${conn[@]}" --name svc-compose --role service --project compose \
  --out "$work/ids" >/dev/null || fail "identity issue through peer-1"
svc=(--ca "$work/dev/ca.crt" --cert "$work/ids/svc-compose.crt" --key "$work/ids/svc-compose.key")
got=""
for _ in $(seq 1 30); do
  got=$(lockbox key get "${key_at[3]}" --endpoint "${addr[3]}" "${svc[@]}" --format hex 2>/dev/null) && break
  sleep 1
done
[ "$got" = "${material[3]}" ] || fail "the identity issued through peer-1 is not accepted by peer-3"
echo "    an identity issued through peer-1 fetches a key through peer-3"
for i in 1 2 3; do
  j=$((i % 3 + 1))
  other=""
  for _ in $(seq 1 10); do
    other=$(lockbox key get "${key_at[$i]}" --endpoint "${addr[$j]}" "${conn[@]}" --format hex 2>"$work/cross.err") && break
    sleep 1
  done
  [ "$other" = "${material[$i]}" ] ||
    fail "the key created through peer-$i is not served by peer-$j with the same material: $(head -c 300 "$work/cross.err")"
done
echo "    every key fetched through another peer than the one that created it, same material"

# 6. One peer container killed.
step "docker kill -s KILL peer-3"
compose kill -s SIGKILL peer-3 >/dev/null 2>&1
[ "$(docker inspect -f '{{.State.Running}}' "$(compose ps -q peer-3)")" = false ] || fail "peer-3 still runs"
for i in 1 2; do
  again=$(lockbox key get "${key_at[$i]}" --endpoint "${addr[$i]}" "${conn[@]}" --format hex) ||
    fail "key of peer-$i not served after peer-3 was killed"
  [ "$again" = "${material[$i]}" ] || fail "key of peer-$i changed after peer-3 was killed"
done
again=$(lockbox key get "${key_at[3]}" --endpoint "${addr[1]}" "${conn[@]}" --format hex) ||
  fail "the key created through peer-3 is not served by peer-1 once peer-3 is dead"
[ "$again" = "${material[3]}" ] || fail "the key created through peer-3 changed"
echo "    the key created through the dead peer is still served, by peer-1"
echo "    peers 1 and 2 still serve their keys with the same material"
lockbox identity issue --endpoint "${addr[2]}" "${conn[@]}" --name svc-after-kill --role service --project compose \
  --out "$work/ids" >/dev/null || fail "the control state does not commit with peer-3 down"
echo "    the control state still commits with one of 3 voters down"

step "docker-compose down -v"
compose down -v --remove-orphans >/dev/null 2>&1
compose_up=""
echo "docker compose test: PASSED in $(elapsed): 3 peers, each with its own swtpm, in containers from docker/compose.yaml"
