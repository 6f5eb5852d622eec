#!/usr/bin/env bash
# porthole's main job in a real VM: build the guest image (Debian's kernel and a busybox
# initramfs holding porthole-agent, vm/build-image.sh), boot it under QEMU (KVM when it works
# here, else TCG), and drive the agent inside it with the porthole CLI over virtio-serial and
# hybrid vsock; finally shut the guest down through the agent.
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

run() { echo; echo "\$ porthole $*"; "$bin/porthole" "$@"; }
sock=(agent --socket "$(value porthole-socket)")
run "${sock[@]}" ping
run "${sock[@]}" os
run "${sock[@]}" exec -- uname -a
run "${sock[@]}" exec -- cat /data/hello.txt
run "${sock[@]}" exec -- ip -4 addr show eth0
run "${sock[@]}" call guest-get-fsinfo
if [ -n "$(value hybrid-vsock)" ]; then
  vsock=(agent --hybrid-vsock "$(value hybrid-vsock)")
  run "${vsock[@]}" ping
  run "${vsock[@]}" exec -- cat /etc/os-release
else
  echo "==> no hybrid vsock: vhost-device-vsock is missing (cargo install vhost-device-vsock --locked)"
fi
run "${sock[@]}" shutdown
wait "$vm_pid" 2>/dev/null || true
vm_pid=
echo
echo "==> the guest powered off; QEMU exited"
