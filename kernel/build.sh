#!/usr/bin/env bash
# Build husk's guest kernel (uncompressed vmlinux with a PVH entry note) from
# Debian's linux-source-6.1, the patches in kernel/patches/ (applied in name
# order) and the fragment kernel/husk.config.
#
# The result is cached per machine under
#   ${HUSK_CACHE_DIR:-/var/cache/husk}/kernel/<key>/{vmlinux,build-info.json,config}
# where <key> = sha256 over husk.config, the patches, this script and the
# installed linux-source-6.1 package version. kernel/build/vmlinux is a symlink to the
# cached vmlinux. A cache hit only refreshes that symlink.
#
# Usage: kernel/build.sh [--check-config]
#   --check-config  extract the source, generate and verify .config, then stop
#                   (no compile, nothing cached).
# Environment:
#   HUSK_CACHE_DIR      cache root (default /var/cache/husk)
#   HUSK_KERNEL_JOBS    make -j value (default: nproc)
#   HUSK_KEEP_SCRATCH=1 keep the scratch build tree (path is printed)
#   TMPDIR              where the scratch tree goes (default /var/tmp; ~1.5 GB)
set -euo pipefail

readonly PKG=linux-source-6.1
readonly SRC_TAR=/usr/src/${PKG}.tar.xz

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
fragment=$here/husk.config
patch_dir=$here/patches
self=$here/$(basename -- "${BASH_SOURCE[0]}")
cache_root=${HUSK_CACHE_DIR:-/var/cache/husk}/kernel
link_dir=$here/build
jobs=${HUSK_KERNEL_JOBS:-$(nproc)}

check_only=0
case "${1:-}" in
  "") ;;
  --check-config) check_only=1 ;;
  -h|--help) sed -n '2,19p' "$self" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "build.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
esac

log() { printf 'kernel: %s\n' "$*" >&2; }
die() { printf 'kernel: error: %s\n' "$*" >&2; exit 1; }

# --- Inputs and cache key ---------------------------------------------------

[[ -f $fragment ]] || die "missing $fragment"
src_version=$(dpkg-query -W -f='${Version}' "$PKG" 2>/dev/null) \
  || die "package $PKG is not installed (apt-get install $PKG)"
[[ -n $src_version ]] || die "package $PKG has no version (not installed?)"
[[ -f $SRC_TAR ]] || die "missing $SRC_TAR (package $PKG $src_version looks incomplete)"

key=$(
  {
    printf 'husk-kernel-cache-v1\n'
    printf 'source-package %s %s\n' "$PKG" "$src_version"
    printf 'fragment %s\n' "$(sha256sum < "$fragment" | cut -d' ' -f1)"
    printf 'build.sh %s\n' "$(sha256sum < "$self" | cut -d' ' -f1)"
    for p in "$patch_dir"/*.patch; do
      [[ -e $p ]] && printf 'patch %s %s\n' "$(basename -- "$p")" "$(sha256sum < "$p" | cut -d' ' -f1)"
    done
  } | sha256sum | cut -d' ' -f1
)
entry=$cache_root/$key

# Point kernel/build/vmlinux at a cached vmlinux (atomic symlink replace).
publish_link() {
  mkdir -p -- "$link_dir"
  ln -sfn -- "$entry/vmlinux" "$link_dir/.vmlinux.$$"
  mv -Tf -- "$link_dir/.vmlinux.$$" "$link_dir/vmlinux"
}

if [[ $check_only == 0 && -f $entry/vmlinux ]]; then
  publish_link
  echo "kernel: cached $entry/vmlinux ($(stat -c %s "$entry/vmlinux") bytes) -> $link_dir/vmlinux"
  exit 0
fi

# --- Serialize builds on this machine -----------------------------------------

mkdir -p -- "$cache_root"
if [[ $check_only == 0 ]]; then
  exec 9>"$cache_root/.lock"
  if ! flock -n 9; then
    log "another kernel build is running; waiting for it ($cache_root/.lock)"
    flock 9
  fi
  # We hold the lock, so staging dirs left behind are from killed builds.
  find "$cache_root" -mindepth 1 -maxdepth 1 -name '.staging-*' -exec rm -rf -- {} +
  # The other build may have produced exactly this entry.
  if [[ -f $entry/vmlinux ]]; then
    publish_link
    echo "kernel: cached $entry/vmlinux ($(stat -c %s "$entry/vmlinux") bytes) -> $link_dir/vmlinux"
    exit 0
  fi
fi

# --- Scratch tree -------------------------------------------------------------

scratch=$(mktemp -d "${TMPDIR:-/var/tmp}/husk-kernel.XXXXXX")
staging=""
cleanup() {
  local rc=$?
  [[ -n $staging && -d $staging ]] && rm -rf -- "$staging"
  if [[ ${HUSK_KEEP_SCRATCH:-0} == 1 ]]; then
    log "scratch tree kept: $scratch"
  else
    rm -rf -- "$scratch"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start=$SECONDS
log "key $key ($PKG $src_version)"
log "extracting $SRC_TAR into $scratch ..."
tar -xf "$SRC_TAR" -C "$scratch"
src=$scratch/$PKG
[[ -f $src/Makefile ]] || die "unexpected tarball layout: no $src/Makefile"
log "extracted in $((SECONDS - start)) s"
for p in "$patch_dir"/*.patch; do
  [[ -e $p ]] || continue
  patch -d "$src" -p1 --batch --forward --quiet <"$p" >"$scratch/patch.log" 2>&1 \
    || { cat "$scratch/patch.log" >&2; die "patch $(basename -- "$p") does not apply"; }
  log "applied $(basename -- "$p")"
done

# Reproducible-ish identity for `uname -v`.
export KBUILD_BUILD_USER=husk KBUILD_BUILD_HOST=husk KBUILD_BUILD_VERSION=1
export ARCH=x86_64
unset KCONFIG_CONFIG

# --- Configure and verify -----------------------------------------------------

log "configuring: allnoconfig + husk.config, olddefconfig"
make -C "$src" -s allnoconfig KCONFIG_ALLCONFIG="$fragment" >"$scratch/config.log" 2>&1 \
  || { cat "$scratch/config.log" >&2; die "make allnoconfig failed"; }
make -C "$src" -s olddefconfig >>"$scratch/config.log" 2>&1 \
  || { cat "$scratch/config.log" >&2; die "make olddefconfig failed"; }

# Compare every option of the fragment with the final .config. "=n" and
# "# ... is not set" both mean "must not be set"; absent from .config means unset.
verify_config() {
  local frag=$1 config=$2
  awk '
    function want_of(line,   m) {
      if (match(line, /^CONFIG_[A-Za-z0-9_]+=/)) {
        name = substr(line, 1, RLENGTH - 1); val = substr(line, RLENGTH + 1)
        if (val == "n") val = "(unset)"
        return 1
      }
      if (match(line, /^# CONFIG_[A-Za-z0-9_]+ is not set$/)) {
        name = line; sub(/^# /, "", name); sub(/ is not set$/, "", name)
        val = "(unset)"
        return 1
      }
      return 0
    }
    FNR == NR {   # husk.config
      line = $0; sub(/[ \t]+$/, "", line)
      if (line ~ /^[ \t]*$/) next
      if (want_of(line)) {
        if (name in want) { printf "fragment: %s given twice (line %d)\n", name, FNR; bad++ }
        else order[++n] = name
        want[name] = val; next
      }
      if (line ~ /^#/) next
      printf "fragment: unparsable line %d: %s\n", FNR, line; bad++; next
    }
    {             # final .config
      if (want_of($0)) have[name] = val
    }
    END {
      for (i = 1; i <= n; i++) {
        o = order[i]; h = (o in have) ? have[o] : "(unset)"
        if (h != want[o]) { printf "  %-45s wanted %-10s got %s\n", o, want[o], h; bad++ }
      }
      printf "checked %d options, %d mismatches\n", n, bad + 0
      exit bad > 0
    }
  ' "$frag" "$config"
}

# For a mismatched option, show where Kconfig defines it and what it depends on.
explain_option() {
  local sym=${1#CONFIG_} def file line
  def=$(cd "$src" && grep -rn --include='Kconfig*' -E "^(menu)?config ${sym}\$" . | head -n1) || true
  if [[ -z $def ]]; then
    printf '    %s: no such Kconfig symbol in this source\n' "$1"
    return
  fi
  file=${def%%:*}; line=${def#*:}; line=${line%%:*}
  awk -v start="$line" -v sym="$1" -v file="${file#./}" '
    NR < start { next }
    NR > start && /^(menu)?config |^choice|^endchoice|^menu |^endmenu|^if |^endif|^source / { exit }
    /^[ \t]*depends on/ { sub(/^[ \t]*/, ""); deps = deps "; " $0 }
    END { printf "    %s (%s:%d)%s\n", sym, file, start, deps }
  ' "$src/$file"
}

if ! verify_config "$fragment" "$src/.config" >"$scratch/verify.txt"; then
  cat "$scratch/verify.txt" >&2
  echo "  definitions:" >&2
  grep -oE '^  CONFIG_[A-Za-z0-9_]+' "$scratch/verify.txt" | while read -r opt; do
    explain_option "$opt" >&2
  done
  die "the final .config differs from husk.config (options above were dropped or changed by Kconfig; usually a missing dependency)"
fi
log "config verified: $(tail -n1 "$scratch/verify.txt")"

if [[ $check_only == 1 ]]; then
  cp -- "$src/.config" "$scratch/final.config"
  if [[ ${HUSK_KEEP_SCRATCH:-0} == 1 ]]; then
    log "final config: $scratch/final.config"
  else
    cat "$src/.config"
  fi
  exit 0
fi

# --- Compile --------------------------------------------------------------------

# Kbuild prints one "  CC      path" style line per step. Show a running count:
# every step on a terminal (overwritten in place), otherwise a status line every
# 100 steps or 10 s; a heartbeat line when make is quiet for 20 s (long links).
# The full log stays in $scratch/build.log.
progress() {
  local logf=$1 line="" pending="" steps=0 last=$SECONDS tty=0 rc eof=0
  [[ -t 2 ]] && tty=1
  while [[ $eof == 0 ]]; do
    if IFS= read -r -t 20 line; then
      line=$pending$line; pending=""
    else
      rc=$?
      if (( rc > 128 )); then    # timeout; keep any partial line for later
        pending+=$line
        printf '%skernel: [%4d s] %5d steps, make still working ...\n' \
          "$([[ $tty == 1 ]] && printf '\r\033[K')" "$((SECONDS - start))" "$steps" >&2
        continue
      fi
      eof=1; line=$pending$line; pending=""
      [[ -n $line ]] || break
    fi
    printf '%s\n' "$line" >>"$logf"
    case $line in
      "  "[A-Z]*) steps=$((steps + 1)) ;;
      *warning:*|*error:*|*Error*)
        [[ $tty == 1 ]] && printf '\r\033[K' >&2
        printf '%s\n' "$line" >&2; continue ;;
      *) continue ;;
    esac
    if [[ $tty == 1 ]]; then
      printf '\r\033[Kkernel: [%4d s] %5d steps %s' "$((SECONDS - start))" "$steps" "${line:0:90}" >&2
    elif (( steps % 100 == 0 || SECONDS - last >= 10 )); then
      printf 'kernel: [%4d s] %5d steps %s\n' "$((SECONDS - start))" "$steps" "$line" >&2
      last=$SECONDS
    fi
  done
  if [[ $tty == 1 ]]; then printf '\n' >&2; fi
  printf 'kernel: [%4d s] %5d steps, make finished\n' "$((SECONDS - start))" "$steps" >&2
  printf '%s\n' "$steps" >"$logf.steps"
}

kernelversion=$(make -C "$src" -s kernelversion)
log "building vmlinux $kernelversion with make -j$jobs (full log: $scratch/build.log)"
build_start=$SECONDS
if ! make -C "$src" -j"$jobs" vmlinux 2>&1 | progress "$scratch/build.log"; then
  tail -n 40 "$scratch/build.log" >&2 || true
  cp -- "$scratch/build.log" "$cache_root/failed-$key.log" 2>/dev/null \
    && log "full log saved as $cache_root/failed-$key.log"
  die "kernel build failed"
fi
build_seconds=$((SECONDS - build_start))
steps=$(cat "$scratch/build.log.steps")

vmlinux=$src/vmlinux
[[ -f $vmlinux ]] || die "make finished but $vmlinux is missing"
# The PVH entry point is the Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY (type 18).
# readelf 2.40 prints it as: Xen 0x00000008 Unknown note type: (0x00000012).
if ! readelf -W -n "$vmlinux" | grep -Eq '^ *Xen .*(\(0x00000012\)|PHYS32_ENTRY)'; then
  die "vmlinux has no PVH entry note (Xen PHYS32_ENTRY); is CONFIG_PVH set?"
fi
vmlinux_bytes=$(stat -c %s "$vmlinux")

# --- Publish atomically: staging dir in the cache root, then rename -------------

# The applied patches as JSON objects: {"name": ..., "sha256": ...}, comma-separated.
patch_list() {
  local p sep=""
  for p in "$patch_dir"/*.patch; do
    [[ -e $p ]] || continue
    printf '%s{"name": "%s", "sha256": "%s"}' "$sep" "$(basename -- "$p")" "$(sha256sum < "$p" | cut -d' ' -f1)"
    sep=", "
  done
}

staging=$(mktemp -d "$cache_root/.staging-$key.XXXXXX")
cp -- "$vmlinux" "$staging/vmlinux"
cp -- "$src/.config" "$staging/config"
cat >"$staging/build-info.json" <<EOF
{
  "key": "$key",
  "sourcePackage": "$PKG",
  "sourceVersion": "$src_version",
  "kernelVersion": "$kernelversion",
  "fragmentSha256": "$(sha256sum < "$fragment" | cut -d' ' -f1)",
  "patches": [$(patch_list)],
  "buildSeconds": $build_seconds,
  "totalSeconds": $((SECONDS - start)),
  "jobs": $jobs,
  "steps": $steps,
  "vmlinuxBytes": $vmlinux_bytes,
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
EOF
chmod 0755 "$staging"
sync -f "$staging/vmlinux" 2>/dev/null || true
if ! mv -T -- "$staging" "$entry" 2>/dev/null; then
  [[ -f $entry/vmlinux ]] || die "could not publish $entry"
  log "another build published $entry first; keeping it"
fi
staging=""
publish_link
echo "kernel: built $entry/vmlinux ($vmlinux_bytes bytes, compiled in ${build_seconds} s) -> $link_dir/vmlinux"
