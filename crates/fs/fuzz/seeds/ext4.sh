#!/usr/bin/env bash
# Rebuilds the ext4 fuzz seeds in crates/fs/fuzz/seeds/ext4/: tiny images (128 KiB, mostly
# zeros, so they pack to a few KiB in git) whose few files exercise each on-disk layout the
# reader follows: an extent tree of depth 1, an ext2 block map with an indirect block, inline
# data, an htree directory, fast and slow symlinks, an xattr block. Run as root (owners).
set -euo pipefail
out="$(cd "$(dirname "$0")/.." && pwd)/seeds/ext4"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tree="$work/tree"
mkdir -p "$tree/d" "$tree/hashed"
printf 'hello\n' > "$tree/d/small"
for i in $(seq 0 7); do printf 'chunk %s' "$i" | dd of="$tree/frag" bs=1 seek=$((i * 2048)) conv=notrunc status=none; done
head -c 14000 /dev/zero | tr '\0' 'x' > "$tree/indirect"
for i in $(seq 1 45); do : > "$tree/hashed/name-with-some-length-$i"; done
ln -s d/small "$tree/fast-link"
ln -s "$(printf 'long/%.0s' $(seq 1 20))target" "$tree/slow-link"
mkfifo "$tree/fifo"
setfattr -n user.note -v "$(head -c 300 /dev/zero | tr '\0' 'v')" "$tree/d/small"
chown 1000:1001 "$tree/d/small"
export E2FSPROGS_FAKE_TIME=1000000000
common=(-q -F -b 1024 -N 64 -L seed -U 01234567-89ab-cdef-0123-456789abcdef -E hash_seed=01234567-89ab-cdef-0123-456789abcdef -d "$tree")
mkfs.ext4 "${common[@]}" -O ^has_journal,^resize_inode "$out/extents.img" 128K
mkfs.ext4 "${common[@]}" -t ext2 -O ^resize_inode -I 128 "$out/ext2.img" 128K
mkfs.ext4 "${common[@]}" -O ^has_journal,^resize_inode,inline_data "$out/inline.img" 128K
ls -l "$out"
