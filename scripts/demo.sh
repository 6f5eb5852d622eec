#!/usr/bin/env bash
# porthole's main job on a built-in default:
#   1. install what is missing and build porthole, porthole-vm and porthole-agent;
#   2. build the guest image (Debian's kernel and a busybox initramfs holding porthole-agent,
#      vm/build-image.sh), boot it under QEMU (KVM when it works here, else TCG) and drive the
#      agent inside it with the porthole CLI over virtio-serial and hybrid vsock;
#   3. build a small guest disk image with real tools and inspect it offline (no root, no
#      mounting, no appliance VM);
#   4. shut the guest down through its agent.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

echo "==> building porthole, porthole-vm and porthole-agent (release)"
cargo build --release --locked -p porthole-cli -p porthole-vmtest -p porthole-agent
bin=${CARGO_TARGET_DIR:-target}/release

work=$(mktemp -d)
vm_pid=
cleanup() {
  exec 3>&- 2>/dev/null || true # porthole-vm stops the VM when its stdin closes
  [ -n "$vm_pid" ] && wait "$vm_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
run() { echo; echo "\$ porthole $*"; "$bin/porthole" "$@"; }

echo "==> building the guest image and booting it (under TCG this takes a minute)"
start=$(date +%s)
# Our fd 3 is porthole-vm's stdin: when this script ends, however it ends, the VM stops.
exec 3> >(exec "$bin/porthole-vm" >"$work/vm.out" 2>"$work/vm.err")
vm_pid=$!
until grep -qx ready "$work/vm.out" 2>/dev/null; do
  if ! kill -0 "$vm_pid" 2>/dev/null; then
    echo "porthole-vm failed:" >&2
    cat "$work/vm.err" >&2
    exit 1
  fi
  sleep 0.5
done
cat "$work/vm.err"
value() { sed -n "s/^$1=//p" "$work/vm.out"; }
echo "    booted: $(value accel), agent up $(value boot-seconds) s after QEMU started," \
  "$(($(date +%s) - start)) s in all"

sock=(agent --socket "$(value porthole-socket)")
run "${sock[@]}" ping
run "${sock[@]}" os
run "${sock[@]}" exec -- uname -a
run "${sock[@]}" exec -- cat /data/hello.txt
run "${sock[@]}" ifaddr
run "${sock[@]}" fsinfo
head -c 4M /dev/urandom >"$work/blob"
run "${sock[@]}" cp "$work/blob" guest:/data/blob
run "${sock[@]}" exec -- sha256sum /data/blob
echo "    host: $(sha256sum <"$work/blob" | cut -d' ' -f1)"
if [ -n "$(value hybrid-vsock)" ]; then
  vsock=(agent --hybrid-vsock "$(value hybrid-vsock)")
  run "${vsock[@]}" ping
  run "${vsock[@]}" exec -- cat /etc/os-release
else
  echo "==> no hybrid vsock: vhost-device-vsock is missing (cargo install vhost-device-vsock --locked)"
fi

echo
echo "==> offline: a small guest disk (GPT, ext4 root, a real dpkg database) built without root,"
echo "    read without mounting"
root="$work/guest-root"
mkdir -p "$root/etc" "$root/usr/bin" "$root/var/lib/dpkg"
printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n' >"$root/etc/os-release"
echo demo-guest >"$root/etc/hostname"
echo "PARTLABEL=root / ext4 defaults 0 1" >"$root/etc/fstab"
cp /bin/ls "$root/usr/bin/ls"
ln -s usr/bin "$root/bin"
cp /var/lib/dpkg/status "$root/var/lib/dpkg/status"
disk="$work/guest.raw"
truncate -s 80M "$disk"
printf 'label: gpt\nstart=2048, size=153600, type=L, name=root\n' | sfdisk -q "$disk"
mkfs.ext4 -q -F -L root -E offset=$((2048 * 512)) -d "$root" "$disk" 76800k
qemu-img convert -O qcow2 "$disk" "$work/guest.qcow2"
run filesystems "$work/guest.qcow2"
run ls -l "$work/guest.qcow2" /
run cat "$work/guest.qcow2" /etc/os-release
run inspect --format text --no-applications "$work/guest.qcow2"

run "${sock[@]}" shutdown
wait "$vm_pid" 2>/dev/null || true
vm_pid=
echo
echo "==> the guest powered off; QEMU exited"
