#!/usr/bin/env bash
# Installs the Debian packages porthole's demo and tests need, skipping those already present.
# Sourced or run by scripts/demo.sh and scripts/test.sh; safe to run again.
set -euo pipefail

packages=(
  qemu-guest-agent   # Debian's qemu-ga: the reference the conformance suite diffs against
  qemu-utils         # qemu-img, qemu-io: build test images in every format
  e2fsprogs          # mkfs.ext4 -d
  xfsprogs           # mkfs.xfs (-p protofile), xfs_io, xfs_db: the XFS reader's test images
  btrfs-progs        # mkfs.btrfs --rootdir, btrfs subvolume, dump-tree
  attr               # setfattr: xattrs in the XFS and btrfs test images
  dosfstools         # mkfs.vfat
  mtools             # mcopy into FAT images without mounting
  ntfs-3g            # mkntfs and ntfs-3g's offline tools
  fdisk              # sfdisk
  lvm2               # real LVM volume groups for the volume tests (on loop devices)
  mdadm              # mdadm --examine cross-checks the md superblock tests
  mount              # losetup
  procps             # ps, used by benchmarks
  qemu-system-x86    # the test VM (crates/vmtest, scripts/vm-demo.sh)
  busybox-static     # the test VM's userland (vm/build-image.sh)
  cpio               # the test VM's initramfs
  kmod               # depmod: modules.dep for the test VM's kernel modules
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "==> installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "error: cargo not found; install a Rust toolchain (1.87 or newer) first" >&2
  exit 1
fi

# rust-vmm's vhost-user vsock backend: the test VM's virtio-vsock device on hosts without
# /dev/vhost-vsock. From crates.io; a few minutes to build once.
if ! command -v vhost-device-vsock >/dev/null && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/vhost-device-vsock" ]; then
  echo "==> cargo install vhost-device-vsock"
  cargo install --quiet --locked vhost-device-vsock
fi
