#!/usr/bin/env bash
# porthole's main job on a built-in default: build the agent and the CLI, start the agent on a
# local socket (as it would run inside a guest) and drive it with the host CLI; then build a
# small guest disk image and look inside it offline.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

echo "==> building porthole-agent and porthole (release)"
cargo build --release --locked -p porthole-agent -p porthole-cli
bin=target/release

work=$(mktemp -d)
trap 'kill "$agent_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin/porthole-agent" -m unix-listen -p "$work/agent.sock" -t "$work/state" -l "$work/agent.log" &
agent_pid=$!
for _ in $(seq 100); do [ -S "$work/agent.sock" ] && break; sleep 0.05; done

run() { echo; echo "\$ porthole $*"; "$bin/porthole" "$@"; }
sock=(agent --socket "$work/agent.sock")
run "${sock[@]}" ping
run "${sock[@]}" os
run "${sock[@]}" hostname
run "${sock[@]}" timezone
run "${sock[@]}" exec -- uname -a
echo "hello from the guest" > "$work/greeting.txt"
run "${sock[@]}" cat "$work/greeting.txt"
run "${sock[@]}" call guest-sync '{"id": 42}'
run "${sock[@]}" info
echo
echo "agent log: $(wc -l < "$work/agent.log") lines; stopping the agent."

# Offline: a small guest disk (GPT, ext4 root) built without root, read without mounting.
root="$work/guest-root"
mkdir -p "$root/etc" "$root/usr/bin" "$root/var/lib/dpkg"
printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n' > "$root/etc/os-release"
echo demo-guest > "$root/etc/hostname"
echo "PARTLABEL=root / ext4 defaults 0 1" > "$root/etc/fstab"
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
