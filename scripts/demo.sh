#!/usr/bin/env bash
# The built-in example: an OCI bundle made from Debian's busybox-static, run
# in its own microVM with `husk run`. Run through `npm run demo` (which does
# the set-up first).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/.tools/node/bin:$PATH
work=$(mktemp -d /tmp/husk-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
node dist/rootfs-builder/cli.js example "$work/bundle" -- sh -c '
  echo "hello from a husk microVM"
  echo "guest kernel: $(uname -srm)"
  echo "cpus: $(grep -c ^processor /proc/cpuinfo), memory: $(grep MemTotal /proc/meminfo)"
  echo "rootfs: $(ls / | tr "\n" " ")"
  echo "whoami: $(id)"' >/dev/null
echo "==> husk run --bundle $work/bundle demo-$$" >&2
echo "    (host kernel: $(uname -srm))" >&2
start=$(date +%s.%N)
set +e
bin/husk run --bundle "$work/bundle" "demo-$$"
status=$?
set -e
printf '==> exit status %d after %.1f s\n' "$status" "$(echo "$(date +%s.%N) - $start" | bc)" >&2
exit "$status"
