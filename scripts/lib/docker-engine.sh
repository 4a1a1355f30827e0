# shellcheck shell=bash
# What the real docker tests (scripts/docker-test.sh, scripts/docker-compose-test.sh) share, sourced
# by both: a Docker engine (the running one, or `dockerd --iptables=false --bridge=none` started here
# as root, following shared/notes/docker.md), the local base image (Debian bookworm by mmdebstrap,
# plus this machine's Node.js 20 and npm: no image is pulled), the lockbox image from
# docker/Dockerfile on that base, and the removal of all of that again.
#
# The sourcing script sets `work` (its temporary directory, removed by docker_engine_cleanup) and
# defines three functions, so each test keeps its own output: `step WHAT` (a progress line),
# `skip WHY` (prints why the test is skipped, exits 0) and `failed WHAT` (prints the failure, exits 1).
# It may add image names to `images`; docker_engine_cleanup removes them.

images=()
started_dockerd=""
# Where the mmdebstrap base is cached between runs.
DOCKER_BASE_TAR=/var/tmp/lockbox-base-bookworm.tar

# An engine that answers, started here when none does. With --install, a missing docker.io or
# mmdebstrap is installed by apt first (as root); without it, their absence skips the test.
docker_engine_start() {
  local install=${1:-}
  [ -n "$install" ] || command -v docker >/dev/null || skip "no docker command (Debian package docker.io)"
  if ! timeout 10 docker info >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] || skip "no Docker engine answers, and starting one needs root"
    if [ -n "$install" ] && { ! command -v dockerd >/dev/null || ! command -v mmdebstrap >/dev/null; }; then
      step "apt: installing docker.io and mmdebstrap"
      timeout 600 apt-get -o DPkg::Lock::Timeout=300 install -y -qq docker.io mmdebstrap >"$work/apt.log" 2>&1 ||
        skip "cannot install docker.io: $(tail -2 "$work/apt.log")"
    fi
    command -v docker >/dev/null || skip "no docker client"
    command -v dockerd >/dev/null || skip "no dockerd (Debian package docker.io)"
    step "starting dockerd --iptables=false --bridge=none"
    dockerd --iptables=false --bridge=none >"$work/dockerd.log" 2>&1 &
    started_dockerd=$!
    for _ in $(seq 1 30); do timeout 5 docker info >/dev/null 2>&1 && break; sleep 1; done
    timeout 5 docker info >/dev/null 2>&1 || skip "dockerd did not start: $(tail -3 "$work/dockerd.log")"
  fi
  # Untagged images made from here on (build stages, layers of a failed build) are ours to remove.
  docker images -q -f dangling=true >"$work/dangling-before" 2>/dev/null || true
}

# lockbox-base:local: Debian bookworm with swtpm and tpm2-tools, and this machine's Node.js 20 and npm.
docker_base_image() {
  docker image inspect lockbox-base:local >/dev/null 2>&1 && return 0
  if [ ! -s "$DOCKER_BASE_TAR" ]; then
    command -v mmdebstrap >/dev/null || skip "no lockbox-base:local image and no mmdebstrap to build one"
    step "mmdebstrap: building $DOCKER_BASE_TAR"
    timeout 600 mmdebstrap --variant=apt --include=swtpm,swtpm-tools,tpm2-tools,ca-certificates,openssl \
      bookworm "$DOCKER_BASE_TAR.part" >"$work/mmdebstrap.log" 2>&1 ||
      skip "mmdebstrap failed: $(tail -3 "$work/mmdebstrap.log")"
    mv "$DOCKER_BASE_TAR.part" "$DOCKER_BASE_TAR"
  fi
  step "docker import $DOCKER_BASE_TAR, with this machine's Node.js and npm"
  images+=(lockbox-debian:local lockbox-base:local)
  timeout 300 docker import "$DOCKER_BASE_TAR" lockbox-debian:local >/dev/null || failed "docker import $DOCKER_BASE_TAR"
  local npm_dir
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  mkdir -p "$work/base"
  cp "$(command -v node)" "$work/base/node"
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
  timeout 300 docker build -q -t lockbox-base:local "$work/base" >"$work/base-build.log" 2>&1 || {
    tail -20 "$work/base-build.log"
    failed "building lockbox-base:local"
  }
}

# The lockbox image TAG from docker/Dockerfile on lockbox-base:local (npm reaches the registry over
# the host's network). Run from the repository root.
docker_lockbox_image() {
  local tag=$1
  images+=("$tag")
  step "docker build -f docker/Dockerfile --build-arg BASE_IMAGE=lockbox-base:local -t $tag"
  timeout 900 docker build --force-rm --network host -f docker/Dockerfile --build-arg BASE_IMAGE=lockbox-base:local \
    -t "$tag" . >"$work/build.log" 2>&1 || {
    tail -30 "$work/build.log"
    failed "docker build"
  }
}

# A free TCP port on 127.0.0.1 (tests never use fixed ports).
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

# Removes the images in `images`, the untagged ones made since docker_engine_start, stops the engine if
# it was started here, and removes `work`. For the caller's EXIT trap, after its own containers.
docker_engine_cleanup() {
  set +e
  for i in "${images[@]}"; do docker rmi -f "$i" >/dev/null 2>&1; done
  for i in $(docker images -q -f dangling=true 2>/dev/null); do
    grep -qx "$i" "$work/dangling-before" 2>/dev/null || docker rmi -f "$i" >/dev/null 2>&1
  done
  if [ -n "$started_dockerd" ]; then
    kill "$started_dockerd" 2>/dev/null
    for _ in $(seq 1 20); do kill -0 "$started_dockerd" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -rf "$work"
}
