#!/usr/bin/env bash
# Installs everything lockbox needs on a fresh Debian 12 machine: the apt
# packages (swtpm to simulate TPMs, tpm2-tools to cross-check our TPM code,
# cryptsetup-bin for the LUKS walk-through, openssl, Keystone and the
# OpenStack clients for the Barbican API's tests) and the npm packages.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

# keystone, uwsgi and the python3 OpenStack clients: the Barbican REST API's tests run a real
# Keystone and the real barbican CLI and Castellan (test/rest, docs/openstack.md).
apt_packages=(swtpm swtpm-tools tpm2-tools cryptsetup-bin openssl ca-certificates
  keystone uwsgi-core uwsgi-plugin-python3 python3-castellan python3-barbicanclient python3-keystoneclient)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}"
else
  echo "==> apt: ${apt_packages[*]} already installed"
fi

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "lockbox needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "==> npm: installing packages from package-lock.json"
  # The lock lists @bufbuild/buf's binary package for every platform; npm ci
  # downloads only the one this machine runs on.
  npm ci --no-audit --no-fund
else
  echo "==> npm: packages up to date"
fi

# Build only when something the build reads changed since the last build: a
# full build (proto types, then tsc over every file) takes 10-40 s, and
# `scripts/dev start` on a built tree should start in seconds.
stamp=dist/.build-stamp
build_inputs=(src cluster tpm test proto scripts tsconfig.json package.json package-lock.json)
if [ -f "$stamp" ] && [ -z "$(find "${build_inputs[@]}" -newer "$stamp" -not -path 'src/gen/*' -print -quit)" ]; then
  echo "==> build: up to date"
else
  echo "==> build"
  npm run build --silent
  touch "$stamp"
fi
