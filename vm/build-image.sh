#!/usr/bin/env bash
# Builds the porthole test VM: Debian's kernel and an initramfs holding busybox, porthole-agent
# and an init that serves the agent on virtio-serial and vsock, plus Debian's qemu-ga on its own
# port (org.qemu.guest_agent.ref) as the reference the in-VM benchmark measures against.
#
#   vm/build-image.sh AGENT_BINARY [CACHE_DIR]
#
# Prints the directory holding `vmlinuz`, `initrd.img` and `manifest.txt`. The only network
# access is `apt-get download` of the kernel package from Debian's archive. The result is cached
# under CACHE_DIR (default: <repo>/target/vm-image) in a directory named by the hash of every
# input (this script, vm/rootfs, the kernel .deb, busybox, the agent, qemu-ga and the libraries
# they load), so an unchanged input set is never rebuilt and a changed one never reuses a stale
# image. The initramfs is reproducible: sorted entries, owner 0:0, fixed mtimes.
#
# Environment: PORTHOLE_VM_KERNEL (default linux-image-cloud-amd64, a metapackage or a real
# linux-image-* package name); PORTHOLE_VM_QEMU_GA (default /usr/sbin/qemu-ga, from the
# installed qemu-guest-agent package).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
agent=${1:?usage: vm/build-image.sh AGENT_BINARY [CACHE_DIR]}
cache=${2:-$repo/target/vm-image}
kernel_pkg=${PORTHOLE_VM_KERNEL:-linux-image-cloud-amd64}
qemu_ga=${PORTHOLE_VM_QEMU_GA:-/usr/sbin/qemu-ga}
# What the init loads (the dependencies come from modules.dep); built-in ones are skipped.
modules=(virtio_pci virtio_console vmw_vsock_virtio_transport virtio_blk ext4 virtio_net)
epoch=0

die() { echo "build-image: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 is missing: install the Debian package $2"; }

need apt-get apt
need dpkg-deb dpkg
need depmod kmod
need cpio cpio
need ldd libc-bin
need sha256sum coreutils
[ -x /bin/busybox ] || die "/bin/busybox is missing: install the Debian package busybox-static"
ldd /bin/busybox >/dev/null 2>&1 && die "/bin/busybox is dynamically linked: install busybox-static"
[ -f "$agent" ] || die "agent binary $agent does not exist"
[ -x "$qemu_ga" ] || die "$qemu_ga is missing: install the Debian package qemu-guest-agent"
agent=$(realpath "$agent")
mkdir -p "$cache/debs"
cache=$(realpath "$cache")

# The real kernel package behind a metapackage (linux-image-cloud-amd64 → linux-image-6.1.0-N-…).
real_kernel_package() {
  local pkg=$1 dep
  dep=$(apt-cache depends --no-recommends --no-suggests "$pkg" 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1)
  echo "${dep:-$pkg}"
}

# Downloads the kernel .deb into the cache once; prints its path.
fetch_kernel() {
  local pkg version deb
  pkg=$(real_kernel_package "$kernel_pkg")
  version=$(apt-cache policy "$pkg" | sed -n 's/^ *Candidate: //p')
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    die "apt knows no package $pkg: run apt-get update (Debian 12 archive needed)"
  fi
  deb=$(ls "$cache/debs/${pkg}_${version//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)
  if [ -z "$deb" ]; then
    (cd "$cache/debs" && apt-get download -q "$pkg=$version" >&2 2>/dev/null) ||
      (cd "$cache/debs" && apt-get download "$pkg=$version" >&2) ||
      die "apt-get download $pkg=$version failed"
    deb=$(ls "$cache/debs/${pkg}_${version//:/%3a}_"*.deb | head -n1)
  fi
  echo "$deb"
}

# The shared libraries a dynamically linked binary loads (empty for a static one).
shared_libraries() {
  ldd "$1" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (.*/\1/p' |
    sort -u
}

deb=$(fetch_kernel)
libs=$({ shared_libraries "$agent"; shared_libraries "$qemu_ga"; } | sort -u)
# Contents only (no paths), so the key is the same wherever the repo and the cache live.
hash() { sha256sum <"$1" | cut -d' ' -f1; }
key=$(
  {
    hash "${BASH_SOURCE[0]}"
    hash "$deb"
    hash /bin/busybox
    hash "$agent"
    hash "$qemu_ga"
    for lib in $libs; do echo "$lib $(hash "$lib")"; done
    (cd "$here/rootfs" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    (cd "$here/rootfs" && find . -print0 | LC_ALL=C sort -z | xargs -0 stat -c '%n %a %F')
    echo "${modules[*]}"
  } | sha256sum | cut -c1-16
)
out="$cache/$key"
if [ -f "$out/initrd.img" ] && [ -f "$out/vmlinuz" ]; then
  echo "$out"
  exit 0
fi

work="$cache/$key.tmp.$$"
rm -rf "$work"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/kernel" "$work/root"
root="$work/root"

# --- kernel and modules ---
echo "build-image: kernel from $(basename "$deb")" >&2
dpkg-deb -x "$deb" "$work/kernel"
kver=$(ls "$work/kernel/lib/modules" | head -n1)
[ -n "$kver" ] || die "$deb holds no /lib/modules"
cp "$work/kernel/boot/vmlinuz-$kver" "$work/vmlinuz"
# Debian's package ships no modules.dep (its postinst runs depmod): make one.
depmod -b "$work/kernel" "$kver"
moddir="$work/kernel/lib/modules/$kver"

# Module paths in load order: each module after everything it depends on.
declare -A seen=()
order=()
add_module() {
  local path=$1 line dep
  [ -n "${seen[$path]:-}" ] && return 0
  seen[$path]=1
  line=$(grep -m1 "^$path:" "$moddir/modules.dep") || die "$path is not in modules.dep"
  for dep in ${line#*:}; do add_module "$dep"; done
  order+=("$path")
}
for name in "${modules[@]}"; do
  path=$(grep -m1 -E "(^|/)${name//_/[_-]}\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | cut -d: -f1 || true)
  if [ -n "$path" ]; then
    add_module "$path"
  elif grep -qE "(^|/)${name//_/[_-]}\.ko$" "$moddir/modules.builtin"; then
    echo "build-image: $name is built into $kver" >&2
  else
    die "module $name is neither in modules.dep nor built into $kver"
  fi
done
for path in "${order[@]}"; do
  case "$path" in *.ko) ;; *) die "$path is compressed; this script copies plain .ko files" ;; esac
  install -D -m 0644 "$moddir/$path" "$root/lib/modules/$kver/$path"
done
mkdir -p "$root/etc"
printf '%s\n' "${order[@]}" >"$root/etc/modules.order"

# --- busybox and its applets ---
install -D -m 0755 /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list-full); do
  [ "$applet" = bin/busybox ] && continue
  mkdir -p "$root/$(dirname "$applet")"
  ln -sf /bin/busybox "$root/$applet"
done
ln -sf /sbin/init "$root/init"

# --- the agents and the libraries they load ---
install -D -m 0755 "$agent" "$root/usr/sbin/porthole-agent"
install -D -m 0755 "$qemu_ga" "$root/usr/sbin/qemu-ga"
for lib in $libs; do
  install -D -m 0755 "$(realpath "$lib")" "$root$lib"
done

# --- configuration and mount points ---
cp -a "$here/rootfs/." "$root/"
mkdir -p "$root"/{proc,sys,dev,run,tmp,data,root,var/log}
chmod 1777 "$root/tmp"

# --- the archive: sorted, owned by root, fixed times ---
find "$root" -exec touch -h -d "@$epoch" {} +
(cd "$root" && find . -print0 | LC_ALL=C sort -z |
  cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) >"$work/initrd.img"

{
  echo "key $key"
  echo "kernel-package $(basename "$deb")"
  echo "kernel-release $kver"
  echo "agent $(sha256sum "$agent" | cut -d' ' -f1) $(if [ -n "$(shared_libraries "$agent")" ]; then echo dynamic; else echo static; fi)"
  echo "qemu-ga $(sha256sum "$qemu_ga" | cut -d' ' -f1) $(dpkg-query -W -f='${Version}' qemu-guest-agent 2>/dev/null || echo unknown)"
  echo "libraries $(echo $libs)"
  echo "modules ${order[*]}"
} >"$work/manifest.txt"

# Into place in one rename; when a concurrent build got there first, its result (built from
# the same inputs) stays.
mkdir "$work/out"
mv "$work/vmlinuz" "$work/initrd.img" "$work/manifest.txt" "$work/out/"
mv -T "$work/out" "$out" 2>/dev/null || [ -f "$out/initrd.img" ] || die "cannot move the image to $out"
echo "build-image: built $out ($(du -h "$out/initrd.img" | cut -f1) initramfs)" >&2
echo "$out"
