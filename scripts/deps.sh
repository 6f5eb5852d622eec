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
  attr               # setfattr: xattrs in the ext4, XFS and btrfs test images
  dosfstools         # mkfs.vfat
  mtools             # mcopy into FAT images without mounting
  ntfs-3g            # mkntfs, and the ntfs-3g FUSE mount that fills the NTFS test images
  fuse3              # fusermount3 for ntfs-3g (the NTFS tests need root and /dev/fuse)
  fdisk              # sfdisk
  lvm2               # real LVM volume groups for the volume tests (on loop devices)
  mdadm              # mdadm --examine cross-checks the md superblock tests
  mount              # losetup
  procps             # ps, used by benchmarks
  rpm                # rpmbuild, rpm --justdb: the rpm database tests' real packages and rpmdb.sqlite
  sqlite3            # sqlite3: header blobs out of rpmdb.sqlite for the Berkeley DB test databases
  db-util            # db_load: Berkeley DB Packages files (Debian's rpm only reads bdb, via bdb_ro)
  gpg                # a signing key imported as a gpg-pubkey pseudo-package
  gpg-agent          # gpg needs its agent to generate that key
  libhivex-bin       # hivexget, hivexsh: read back the Windows registry test hives
  libwin-hivex-perl  # hivexregedit --merge: build the Windows registry test hives
  pacman-package-manager  # pacman -U --dbpath: the pacman local database tests' real package database
  ifupdown           # ifquery -i: reads an interfaces file the way ifup does, for the ifupdown parser test
  sudo               # cvtsudoers -f json: sudo's own parse of the sudoers test files
  util-linux         # unshare, nsenter, fsfreeze: the freeze tests' private mount namespace
  passwd             # useradd, userdel, chpasswd: throwaway users in the account tests; useradd -P builds phony guests' accounts
  systemd            # systemctl --root enable/mask: the phony guests' unit links
  qemu-system-x86    # the test VM (crates/vmtest, scripts/demo.sh)
  libvirt-daemon-system       # libvirtd: crates/vmtest/tests/libvirt.rs runs a private one
  libvirt-daemon-driver-qemu  # its QEMU driver
  libvirt-clients    # virsh: `porthole agent --domain` goes through virsh qemu-agent-command
  busybox-static     # the test VM's userland (vm/build-image.sh)
  cpio               # the test VM's initramfs
  kmod               # depmod: modules.dep for the test VM's kernel modules
  libxml2-utils      # xmllint --relaxng: inspect --format xml checked against virt-inspector.rng
  python3-jsonschema # validates inspect --format json against docs/inspect-report.schema.json
  file               # file(1): checks the phony Windows guest's tiny PE cmd.exe is a real PE32+ executable
  guestfs-tools      # virt-inspector: the reference of the inspector's differential test and benchmark
  libguestfs-tools   # libguestfs-test-tool, to see why the appliance does not boot
  libguestfs-xfs     # XFS in libguestfs's appliance (a Recommends, which --no-install-recommends skips)
)

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

missing_packages() {
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
}

# Two passes: installing one package can remove another that conflicts with it (the machine
# image's newer qemu-utils from backports is removed by Debian 12's qemu-system-x86), and the
# second pass brings back the version that fits with the rest.
updated=""
for pass in 1 2; do
  missing_packages
  ((${#missing[@]})) || break
  echo "==> installing Debian packages (pass $pass): ${missing[*]}"
  [ -n "$updated" ] || { $sudo apt-get update -qq; updated=1; }
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
done
missing_packages
if ((${#missing[@]})); then
  echo "error: could not install: ${missing[*]}" >&2
  exit 1
fi

# Debian's rpm lacks the ndb backend; ScanCode's rpm 4.16 build on PyPI has it. The rpm tests
# build their Packages.db (openSUSE's format) with it; PORTHOLE_NDB_RPM points elsewhere.
ndb_rpm_dir=/opt/porthole-tools/rpm-inspector-rpm
if [ -z "${PORTHOLE_NDB_RPM:-}" ] && [ ! -x "$ndb_rpm_dir/rpm_inspector_rpm/bin/rpm" ]; then
  echo "==> installing rpm with the ndb backend (PyPI rpm-inspector-rpm) into $ndb_rpm_dir"
  $sudo python3 -m pip install --quiet --no-deps --disable-pip-version-check \
    --target "$ndb_rpm_dir" rpm-inspector-rpm==4.16.1.3.210404
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
