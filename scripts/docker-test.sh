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
images=()
started_dockerd=""

cleanup() {
  set +e
  for c in "${containers[@]}"; do docker rm -f "$c" >/dev/null 2>&1; done
  for i in "${images[@]}"; do docker rmi -f "$i" >/dev/null 2>&1; done
  # The build stage's untagged images, and layers of a failed build: those that were not there before.
  for i in $(docker images -q -f dangling=true 2>/dev/null); do
    grep -qx "$i" "$work/dangling-before" 2>/dev/null || docker rmi -f "$i" >/dev/null 2>&1
  done
  if [ -n "$started_dockerd" ]; then
    kill "$started_dockerd" 2>/dev/null
    for _ in $(seq 1 20); do kill -0 "$started_dockerd" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
skip() {
  echo "SKIPPED: $*"
  exit 0
}
step() { echo "==> $*"; }

# 1. An engine: the running one, or one started here.
if ! timeout 10 docker info >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || skip "no Docker engine answers, and starting one needs root"
  if ! command -v dockerd >/dev/null || ! command -v mmdebstrap >/dev/null; then
    step "apt: installing docker.io and mmdebstrap"
    timeout 600 apt-get -o DPkg::Lock::Timeout=300 install -y -qq docker.io mmdebstrap >"$work/apt.log" 2>&1 ||
      skip "cannot install docker.io: $(tail -2 "$work/apt.log")"
  fi
  command -v docker >/dev/null || skip "no docker client"
  step "starting dockerd --iptables=false --bridge=none"
  dockerd --iptables=false --bridge=none >"$work/dockerd.log" 2>&1 &
  started_dockerd=$!
  for _ in $(seq 1 30); do timeout 5 docker info >/dev/null 2>&1 && break; sleep 1; done
  timeout 5 docker info >/dev/null 2>&1 || skip "dockerd did not start: $(tail -3 "$work/dockerd.log")"
fi

docker images -q -f dangling=true >"$work/dangling-before" 2>/dev/null || true

# 2. The local base image: Debian bookworm with swtpm and tpm2-tools, and Node.js 20 with npm.
base_tar=/var/tmp/lockbox-base-bookworm.tar
if ! docker image inspect lockbox-base:local >/dev/null 2>&1; then
  if [ ! -s "$base_tar" ]; then
    command -v mmdebstrap >/dev/null || skip "no lockbox-base:local image and no mmdebstrap to build one"
    step "mmdebstrap: building $base_tar"
    timeout 600 mmdebstrap --variant=apt --include=swtpm,swtpm-tools,tpm2-tools,ca-certificates,openssl \
      bookworm "$base_tar.part" >"$work/mmdebstrap.log" 2>&1 || skip "mmdebstrap failed: $(tail -3 "$work/mmdebstrap.log")"
    mv "$base_tar.part" "$base_tar"
  fi
  step "docker import $base_tar"
  timeout 300 docker import "$base_tar" lockbox-debian:local >/dev/null
  images+=(lockbox-debian:local)
  node_bin=$(command -v node)
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  mkdir -p "$work/base"
  cp "$node_bin" "$work/base/node"
  cp -r "$npm_dir" "$work/base/npm"
  # This machine's trust store: where its traffic to the npm registry passes a TLS proxy, npm in
  # the build needs the proxy's CA as the host's npm does.
  cp /etc/ssl/certs/ca-certificates.crt "$work/base/ca-certificates.crt"
  cat >"$work/base/Dockerfile" <<'DOCKERFILE'
FROM lockbox-debian:local
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && node --version && npm --version
DOCKERFILE
  timeout 300 docker build -q -t lockbox-base:local "$work/base" >/dev/null
  images+=(lockbox-base:local)
fi

# 3. The image, from docker/Dockerfile with that base (npm reaches the registry over the host network).
step "docker build -f docker/Dockerfile --build-arg BASE_IMAGE=lockbox-base:local -t $tag"
timeout 900 docker build --force-rm --network host -f docker/Dockerfile --build-arg BASE_IMAGE=lockbox-base:local \
  -t "$tag" . >"$work/build.log" 2>&1 || {
  tail -30 "$work/build.log"
  echo "FAILED: docker build"
  exit 1
}
images+=("$tag")

# 4. One peer and its swtpm, host networking, free loopback ports.
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
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
