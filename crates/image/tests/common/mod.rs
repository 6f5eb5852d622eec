//! Shared by the image tests: the reference disk, qemu-img helpers and the byte comparer.

#![allow(dead_code)]

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use porthole_image::BlockDevice;
use porthole_testkit::tools::{cached, pattern, run};

pub const MIB: u64 = 1 << 20;
/// Not a multiple of any cluster size: the last cluster is partial.
pub const DISK: u64 = 6 * MIB + 7 * 512;

pub fn qemu_img(args: &[&str]) -> String {
    run("qemu-img", "qemu-utils", args, None)
}

pub fn qemu_io(format: &str, path: &Path, cmd: &str) {
    let p = path.to_str().expect("utf-8 path");
    run("qemu-io", "qemu-utils", &["-f", format, "-c", cmd, p], None);
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The reference raw disk: patterned data, holes, explicit zero runs, an unaligned region,
/// compressible text, and data in the partial last cluster.
pub fn write_reference(path: &Path) {
    let f = std::fs::File::create(path).expect("create raw");
    f.set_len(DISK).expect("size raw");
    let put = |at: u64, data: &[u8]| f.write_all_at(data, at).expect("write raw");
    put(0, &pattern("a", MIB as usize));
    put(2 * MIB, &vec![0u8; (MIB / 2) as usize]);
    put(
        2 * MIB + MIB / 2 + 4196,
        &pattern("b", (MIB - 4196) as usize),
    );
    put(4 * MIB, &pattern("c", 3000));
    let text: Vec<u8> = b"porthole reads disk images offline. "
        .iter()
        .copied()
        .cycle()
        .take((MIB / 2) as usize)
        .collect();
    put(4 * MIB + MIB / 2, &text);
    put(DISK - 3584, &pattern("d", 3584));
}

/// Builds (once, cached) a directory holding the reference raw disk and `build`'s images.
pub fn image_dir(recipe: &str, build: impl FnOnce(&Path)) -> PathBuf {
    let dirs = cached(recipe, &["dir"], |paths| {
        let dir = &paths[0];
        std::fs::create_dir_all(dir).expect("mkdir");
        write_reference(&dir.join("src.raw"));
        build(dir);
    });
    dirs[0].clone()
}

pub use porthole_mutate::Rng;

/// Compares every byte of `dev` with qemu's own raw conversion of `image`: chunked over the
/// whole disk, then unaligned random reads across cluster boundaries.
pub fn assert_same_as_qemu(dev: &dyn BlockDevice, image: &Path, format: &str) {
    let raw = image.with_extension("qemu.raw");
    qemu_img(&["convert", "-f", format, "-O", "raw", s(image), s(&raw)]);
    let want = std::fs::read(&raw).expect("read qemu raw");
    std::fs::remove_file(&raw).expect("remove qemu raw");
    assert_eq!(dev.size(), want.len() as u64, "{}: size", image.display());
    let chunk = 300_001usize;
    let mut buf = vec![0u8; chunk];
    for (i, expect) in want.chunks(chunk).enumerate() {
        let got = &mut buf[..expect.len()];
        dev.read_exact_at(got, (i * chunk) as u64)
            .unwrap_or_else(|e| panic!("{}: read chunk {i}: {e}", image.display()));
        assert!(
            got == expect,
            "{}: chunk {i} at {:#x} differs",
            image.display(),
            i * chunk
        );
    }
    let mut rng = Rng(0x1234_5678 ^ want.len() as u64);
    for _ in 0..300 {
        let len = (rng.next() % 140_000) as usize;
        let at = (rng.next() % (want.len() - len) as u64) as usize;
        let mut got = vec![0u8; len];
        dev.read_exact_at(&mut got, at as u64).expect("random read");
        assert!(
            got == want[at..at + len],
            "{}: {len} bytes at {at:#x} differ",
            image.display()
        );
    }
    let mut one = [0u8; 1];
    assert!(
        dev.read_exact_at(&mut one, want.len() as u64).is_err(),
        "read past the end"
    );
}
