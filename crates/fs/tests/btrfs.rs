//! btrfs reader against real images: mkfs.btrfs --rootdir (DUP and single metadata), kernel-written
//! images with zlib, zstd and LZO compression, subvolumes, a default subvolume and snapshots;
//! hostile images; and deterministic mutations through the fuzz entry point.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use porthole_fs::{BtrfsFs, FileType, Filesystem, FsKind, SubvolumeSelector};
use porthole_testkit::kernel::Mount;
use porthole_testkit::{
    assert_same_tree, blkid_label_uuid, build_reference_tree, cached, is_root, mem, open, pattern,
    run, truncate, Fidelity,
};

const SB: usize = 0x10000;

fn mkfs(img: &Path, args: &[&str]) {
    truncate(img, 300 << 20);
    let mut all = vec!["-q", "-f"];
    all.extend_from_slice(args);
    let img = img.to_string_lossy();
    all.push(&img);
    run("mkfs.btrfs", "btrfs-progs", &all, None);
}

/// A reference tree put in with `mkfs.btrfs --rootdir`, metadata profile `meta`.
fn rootdir_image(meta: &str) -> (PathBuf, PathBuf) {
    let paths = cached(&format!("btrfs-rootdir-{meta}-v1"), &["tree", "img"], |p| {
        build_reference_tree(&p[0], Fidelity::POSIX);
        let tree = p[0].to_string_lossy().into_owned();
        mkfs(
            &p[1],
            &["-L", "porthole-btrfs", "-m", meta, "--rootdir", &tree],
        );
    });
    (paths[0].clone(), paths[1].clone())
}

fn check_info(fs: &dyn Filesystem, img: &Path) {
    let info = fs.info();
    assert_eq!(info.kind, FsKind::Btrfs);
    assert_eq!((info.label, info.uuid), blkid_label_uuid(img));
}

#[test]
fn rootdir_image_matches_tree_dup_metadata() {
    let (tree, img) = rootdir_image("dup");
    let dump = run(
        "btrfs",
        "btrfs-progs",
        &[
            "inspect-internal",
            "dump-tree",
            "-t",
            "chunk",
            &img.to_string_lossy(),
        ],
        None,
    );
    assert!(
        dump.contains("METADATA|DUP"),
        "metadata is not DUP:\n{dump}"
    );
    let fs = porthole_fs::open(open(&img)).unwrap();
    check_info(fs.as_ref(), &img);
    assert_eq!(fs.info().label.as_deref(), Some("porthole-btrfs"));
    assert_same_tree(fs.as_ref(), b"/", &tree, Fidelity::POSIX);
}

#[test]
fn rootdir_image_matches_tree_single_metadata() {
    let (tree, img) = rootdir_image("single");
    let fs = porthole_fs::open(open(&img)).unwrap();
    check_info(fs.as_ref(), &img);
    assert_same_tree(fs.as_ref(), b"/", &tree, Fidelity::POSIX);
}

#[test]
fn lstat_semantics_and_errors() {
    let (_, img) = rootdir_image("dup");
    let fs = porthole_fs::open(open(&img)).unwrap();
    let link = fs.metadata(b"/link-short").unwrap();
    assert_eq!(link.file_type, FileType::Symlink);
    assert_eq!(fs.read_link(b"/link-short").unwrap(), b"sizes/file-1");
    // A symlink in the middle of a path is not followed.
    let e = fs.metadata(b"/data/link-dir/hostname").unwrap_err();
    assert!(matches!(e, porthole_fs::Error::NotADirectory { .. }), "{e}");
    assert!(matches!(
        fs.metadata(b"/etc/missing").unwrap_err(),
        porthole_fs::Error::NotFound { .. }
    ));
    assert!(matches!(
        fs.read_file(b"/etc", 100).unwrap_err(),
        porthole_fs::Error::IsADirectory { .. }
    ));
    assert!(fs.read_dir(b"/etc/hostname").is_err());
    assert_eq!(
        fs.metadata(b"/etc/hostname").unwrap().mtime,
        Some(981_173_106)
    );
}

// ---- kernel-written images (root, loop mounts) ----

fn need_root() {
    assert!(
        is_root(),
        "the btrfs kernel-image tests loop-mount images: run them as root (CI does)"
    );
}

fn btrfs(args: &[&str]) -> String {
    run("btrfs", "btrfs-progs", args, None)
}

/// Text that compresses well with every algorithm but is not one repeated byte.
fn compressible(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut i = 0u32;
    while out.len() < len {
        out.extend_from_slice(format!("line {} of the compressible file\n", i % 97).as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// A kernel-written image, mounted with `compress-force=<algo>`:
/// top level: `@` (the reference tree, set as default), `@snap` (snapshot of `@`),
/// `@home` (files and a nested subvolume `nested`), `@home-snap` (snapshot of `@home`).
fn kernel_image(algo: &str) -> (PathBuf, PathBuf) {
    need_root();
    let paths = cached(&format!("btrfs-kernel-{algo}-v2"), &["tree", "img"], |p| {
        build_reference_tree(&p[0], Fidelity::POSIX);
        std::fs::write(p[0].join("data/compressible"), compressible(300_000)).unwrap();
        std::fs::write(p[0].join("etc/small-compressible"), compressible(3000)).unwrap();
        mkfs(&p[1], &["-L", &format!("k-{algo}")]);
        let mnt = p[1].with_extension("mnt");
        let m = Mount::new(&p[1], &mnt, &format!("loop,compress-force={algo}"));
        let at = |rel: &str| mnt.join(rel).to_string_lossy().into_owned();
        btrfs(&["subvolume", "create", &at("@")]);
        run(
            "cp",
            "coreutils",
            &["-a", &format!("{}/.", p[0].display()), &at("@")],
            None,
        );
        btrfs(&["subvolume", "create", &at("@home")]);
        std::fs::create_dir_all(mnt.join("@home/user")).unwrap();
        std::fs::write(mnt.join("@home/user/notes.txt"), compressible(70_000)).unwrap();
        run(
            "setfattr",
            "attr",
            &[
                "-n",
                "user.porthole",
                "-v",
                "hello",
                &at("@home/user/notes.txt"),
            ],
            None,
        );
        btrfs(&["subvolume", "create", &at("@home/user/nested")]);
        std::fs::write(mnt.join("@home/user/nested/inner"), b"inside nested\n").unwrap();
        btrfs(&["subvolume", "snapshot", &at("@"), &at("@snap")]);
        btrfs(&["subvolume", "snapshot", &at("@home"), &at("@home-snap")]);
        let list = btrfs(&["subvolume", "list", &at("")]);
        let id = list
            .lines()
            .find(|l| l.ends_with(" path @"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .to_string();
        btrfs(&["subvolume", "set-default", &id, &at("")]);
        run("sync", "coreutils", &[], None);
        drop(m);
    });
    (paths[0].clone(), paths[1].clone())
}

/// How many extents `dump-tree` shows compressed with `name`.
fn compressed_extents(img: &Path, name: &str) -> usize {
    btrfs(&["inspect-internal", "dump-tree", &img.to_string_lossy()])
        .lines()
        .filter(|l| l.contains(&format!("({name})")) && l.contains("compression"))
        .count()
}

fn kernel_image_test(algo: &str) {
    let (tree, img) = kernel_image(algo);
    let n = compressed_extents(&img, algo);
    assert!(
        n > 10,
        "only {n} {algo}-compressed extents: the test would prove nothing"
    );
    let dev = open(&img);
    // The default subvolume is `@`.
    let fs = porthole_fs::open(dev.clone()).unwrap();
    check_info(fs.as_ref(), &img);
    assert_same_tree(fs.as_ref(), b"/", &tree, Fidelity::POSIX);

    let bfs = BtrfsFs::open(dev).unwrap();
    let subs = bfs.list_subvolumes().unwrap();
    let mut paths: Vec<String> = subs
        .iter()
        .map(|s| String::from_utf8_lossy(&s.path).into_owned())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        ["@", "@home", "@home-snap", "@home/user/nested", "@snap"]
    );
    let at = subs.iter().find(|s| s.path == b"@").unwrap();
    assert_eq!(bfs.subvolume_id(), at.id);
    assert_eq!(at.parent_id, 5);

    // The snapshot holds the same tree; by path and by id.
    let snap = bfs
        .open_subvolume(SubvolumeSelector::Path(b"/@snap"))
        .unwrap();
    assert_same_tree(&snap, b"/", &tree, Fidelity::POSIX);
    let snap_id = subs.iter().find(|s| s.path == b"@snap").unwrap().id;
    assert_eq!(
        bfs.open_subvolume(SubvolumeSelector::Id(snap_id))
            .unwrap()
            .subvolume_id(),
        snap_id
    );

    // The top level shows subvolumes as directories, and paths cross into them.
    let top = bfs.open_subvolume(SubvolumeSelector::Id(5)).unwrap();
    let mut names: Vec<_> = top.read_dir(b"/").unwrap();
    names.sort_by(|a, b| a.name.cmp(&b.name));
    let listed: Vec<_> = names
        .iter()
        .map(|e| (e.name.as_slice(), e.file_type))
        .collect();
    assert_eq!(
        listed,
        [
            (&b"@"[..], FileType::Directory),
            (b"@home", FileType::Directory),
            (b"@home-snap", FileType::Directory),
            (b"@snap", FileType::Directory)
        ]
    );
    assert_eq!(
        top.read_file(b"/@/etc/hostname", 100).unwrap(),
        b"porthole-test\n"
    );
    assert_eq!(
        top.read_file(b"/@home/user/notes.txt", 1 << 20).unwrap(),
        compressible(70_000)
    );
    assert_eq!(
        top.read_file(b"/@home/user/nested/inner", 100).unwrap(),
        b"inside nested\n"
    );
    let home = bfs
        .open_subvolume(SubvolumeSelector::Path(b"@home"))
        .unwrap();
    let nested = home.metadata(b"/user/nested").unwrap();
    assert_eq!((nested.file_type, nested.ino), (FileType::Directory, 256));
    // In the snapshot of @home, the nested subvolume is an empty directory, as the kernel shows.
    let e = top.metadata(b"/@home-snap/user/nested").unwrap();
    assert_eq!(e.file_type, FileType::Directory);
    assert!(top.read_dir(b"/@home-snap/user/nested").unwrap().is_empty());
    assert_eq!(
        top.read_file(b"/@home-snap/user/notes.txt", 1 << 20)
            .unwrap(),
        compressible(70_000)
    );
    assert!(bfs
        .open_subvolume(SubvolumeSelector::Path(b"@home/user"))
        .is_err());
    assert!(bfs.open_subvolume(SubvolumeSelector::Id(4242)).is_err());
}

#[test]
fn kernel_image_zlib() {
    kernel_image_test("zlib");
}

#[test]
fn kernel_image_zstd() {
    kernel_image_test("zstd");
}

#[test]
fn kernel_image_lzo() {
    kernel_image_test("lzo");
}

// ---- hostile images ----

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn fix_sb(img: &mut [u8]) {
    let c = crc32c::crc32c(&img[SB + 0x20..SB + 4096]);
    img[SB..SB + 4].copy_from_slice(&c.to_le_bytes());
}

fn nodesize(img: &[u8]) -> usize {
    le32(img, SB + 0x94) as usize
}

/// Physical offsets of every tree block of this filesystem (fsid at +0x20), found by scanning.
fn tree_blocks(img: &[u8]) -> Vec<usize> {
    let fsid = img[SB + 0x20..SB + 0x30].to_vec();
    let ns = nodesize(img);
    (0..img.len().saturating_sub(ns))
        .step_by(4096)
        .filter(|&o| o != SB && img[o + 0x20..o + 0x30] == fsid[..])
        .collect()
}

fn fix_node(img: &mut [u8], at: usize) {
    let ns = nodesize(img);
    let c = crc32c::crc32c(&img[at + 0x20..at + ns]);
    img[at..at + 4].copy_from_slice(&c.to_le_bytes());
}

fn error_of(img: Vec<u8>) -> String {
    match porthole_fs::open(mem(img)) {
        Ok(fs) => {
            // Open may succeed; then walking must report the damage without panicking.
            let mut errors = String::new();
            walk_errors(fs.as_ref(), b"/".to_vec(), &mut errors, 0);
            errors
        }
        Err(e) => e.to_string(),
    }
}

fn walk_errors(fs: &dyn Filesystem, dir: Vec<u8>, errors: &mut String, depth: usize) {
    let entries = match fs.read_dir(&dir) {
        Ok(e) => e,
        Err(e) => return errors.push_str(&format!("{e}\n")),
    };
    for e in entries {
        let mut p = dir.clone();
        if !p.ends_with(b"/") {
            p.push(b'/');
        }
        p.extend_from_slice(&e.name);
        match e.file_type {
            FileType::Directory if depth < 20 => walk_errors(fs, p, errors, depth + 1),
            FileType::Regular => {
                if let Err(e) = fs.read_file(&p, 64 << 20) {
                    errors.push_str(&format!("{e}\n"));
                }
            }
            _ => {}
        }
    }
}

#[test]
fn truncated_images_fail_cleanly() {
    let (_, img) = rootdir_image("dup");
    let full = std::fs::read(&img).unwrap();
    // Without the magic the image is simply not btrfs.
    for len in [0, 4096, SB + 0x30] {
        let e = porthole_fs::open(mem(full[..len].to_vec())).unwrap_err();
        assert!(matches!(e, porthole_fs::Error::Unrecognized), "{e}");
    }
    // With it, every cut is reported, at open or while reading.
    for len in [SB + 0x48, SB + 4095, 1 << 20, 8 << 20, 30 << 20] {
        let e = error_of(full[..len].to_vec());
        assert!(!e.is_empty(), "truncated to {len}: no error");
    }
    let e = porthole_fs::open(mem(full[..SB + 100].to_vec()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("beyond the end"), "{e}");
}

#[test]
fn bad_superblock_checksum_is_refused() {
    let (_, img) = rootdir_image("dup");
    let mut data = std::fs::read(&img).unwrap();
    data[SB + 0x12b] ^= 0x20; // a letter of the label
    let e = porthole_fs::open(mem(data)).unwrap_err().to_string();
    assert!(
        e.contains("superblock checksum mismatch") && e.contains("0x10000"),
        "{e}"
    );
}

#[test]
fn chunk_mapping_outside_the_device_is_refused() {
    let (_, img) = rootdir_image("dup");
    let mut data = std::fs::read(&img).unwrap();
    // The first sys_chunk_array entry: key (17) + chunk (48) + stripes; stripe 0's offset.
    let stripe0 = SB + 0x32b + 17 + 48 + 8;
    for s in 0..2 {
        let at = stripe0 + s * 32;
        data[at..at + 8].copy_from_slice(&(1u64 << 50).to_le_bytes());
    }
    fix_sb(&mut data);
    let e = porthole_fs::open(mem(data)).unwrap_err().to_string();
    assert!(e.contains("beyond the end"), "{e}");
}

#[test]
fn tree_block_pointing_to_itself_is_refused() {
    let (_, img) = rootdir_image("single");
    let mut data = std::fs::read(&img).unwrap();
    // Every internal node (level > 0) gets its first child pointer aimed at itself.
    let mut patched = 0;
    for at in tree_blocks(&data) {
        if data[at + 0x64] > 0 && le32(&data, at + 0x60) > 0 {
            let own = le64(&data, at + 0x30);
            let ptr = at + 0x65 + 17;
            data[ptr..ptr + 8].copy_from_slice(&own.to_le_bytes());
            fix_node(&mut data, at);
            patched += 1;
        }
    }
    assert!(patched > 0, "no internal tree node in the image");
    let e = error_of(data);
    assert!(e.contains("expected"), "no level error: {e}");
}

#[test]
fn compressed_extent_with_lying_lengths_fails_cleanly() {
    let (_, img) = kernel_image("zlib");
    let mut data = std::fs::read(&img).unwrap();
    let ns = nodesize(&data);
    let mut patched = 0;
    for at in tree_blocks(&data) {
        if data[at + 0x64] != 0 {
            continue;
        }
        for i in 0..le32(&data, at + 0x60) as usize {
            let item = at + 0x65 + i * 25;
            let (kind, off, size) = (
                data[item + 8],
                le32(&data, item + 17),
                le32(&data, item + 21),
            );
            let d = at + 0x65 + off as usize;
            if kind != 108
                || size < 53
                || d + 53 > at + ns
                || data[d + 16] == 0
                || data[d + 20] != 1
            {
                continue;
            }
            // ram_bytes 1 TiB, disk_num_bytes 1 GiB.
            data[d + 8..d + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
            data[d + 29..d + 37].copy_from_slice(&(1u64 << 30).to_le_bytes());
            patched += 1;
        }
        fix_node(&mut data, at);
    }
    assert!(patched > 0, "no compressed regular extent found");
    let e = error_of(data);
    assert!(e.contains("compressed extent"), "no compression error: {e}");
}

// ---- fuzzing ----

/// A small btrfs image (mixed block groups, 4 KiB nodes) cut after its last used block: the
/// seed of the cargo-fuzz target and of the mutation test.
fn fuzz_seed() -> Vec<u8> {
    let paths = cached("btrfs-fuzz-seed-v2", &["tree", "img"], |p| {
        std::fs::create_dir_all(p[0].join("dir/sub")).unwrap();
        std::fs::write(p[0].join("dir/file"), pattern("fuzz", 5000)).unwrap();
        std::fs::write(p[0].join("small"), b"small inline file\n").unwrap();
        std::os::unix::fs::symlink("dir/file", p[0].join("link")).unwrap();
        for i in 0..24 {
            std::fs::write(p[0].join(format!("dir/sub/n{i}")), [i as u8; 10]).unwrap();
        }
        truncate(&p[1], 16 << 20);
        run(
            "mkfs.btrfs",
            "btrfs-progs",
            &[
                "-q",
                "--mixed",
                "--rootdir",
                &p[0].to_string_lossy(),
                &p[1].to_string_lossy(),
            ],
            None,
        );
    });
    let mut data = std::fs::read(&paths[1]).unwrap();
    let used = data
        .chunks(4096)
        .rposition(|b| b.iter().any(|&x| x != 0))
        .unwrap();
    data.truncate((used + 1) * 4096);
    data
}

use porthole_mutate::Rng;

#[test]
fn seed_is_read() {
    let seed = fuzz_seed();
    let fs = porthole_fs::open(mem(seed.clone())).unwrap();
    assert_eq!(
        fs.read_file(b"/dir/file", 1 << 20).unwrap(),
        pattern("fuzz", 5000)
    );
    assert_eq!(fs.read_dir(b"/dir/sub").unwrap().len(), 24);
    porthole_fs::fuzzing::fuzz_filesystem(&seed);
}

/// The committed cargo-fuzz seeds (made by `fuzz_seed`) still open and walk.
#[test]
fn corpus_seeds_are_read() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/btrfs");
    let mut n = 0;
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let fs = porthole_fs::open(mem(data.clone())).unwrap();
        assert_eq!(
            fs.read_file(b"/small", 100).unwrap(),
            b"small inline file\n"
        );
        porthole_fs::fuzzing::fuzz_filesystem(&data);
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", corpus.display());
}

#[test]
fn mutated_metadata_never_panics() {
    let seed = fuzz_seed();
    let blocks = tree_blocks(&seed);
    assert!(blocks.len() > 5, "seed has {} tree blocks", blocks.len());
    assert!(
        blocks.iter().any(|&b| seed[b + 0x64] > 0),
        "the seed has no internal tree node"
    );
    let ns = nodesize(&seed);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let edges = [
        0u64,
        1,
        u64::MAX,
        u64::from(u32::MAX),
        1 << 32,
        4096,
        0x10000,
    ];
    let started = std::time::Instant::now();
    for round in 0..2000 {
        let mut data = seed.clone();
        // A tree block or the superblock, then 1-4 edits inside it.
        let target = if rng.below(6) == 0 {
            SB
        } else {
            blocks[rng.below(blocks.len())]
        };
        let span = if target == SB { 0x32b + 0x200 } else { ns };
        for _ in 0..1 + rng.below(4) {
            let pos = target + 0x20 + rng.below(span - 0x28);
            match rng.below(4) {
                0 => data[pos] ^= 1 << rng.below(8),
                1 => data[pos] = rng.next() as u8,
                2 => {
                    let v = edges[rng.below(edges.len())] as u32;
                    data[pos..pos + 4].copy_from_slice(&v.to_le_bytes());
                }
                _ => {
                    let v = edges[rng.below(edges.len())];
                    data[pos..pos + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        // Most rounds repair the checksums so the mutation reaches the parsers behind them.
        if round % 4 != 0 {
            if target == SB {
                fix_sb(&mut data);
            } else {
                fix_node(&mut data, target);
            }
        }
        if round % 2 == 0 {
            porthole_fs::fuzzing::fuzz_filesystem(&data);
        } else if let Ok(fs) = BtrfsFs::open_with(Arc::new(porthole_image::MemDevice(data)), false)
        {
            porthole_fs::fuzzing::walk(&fs);
        }
    }
    eprintln!("2000 mutations in {:?}", started.elapsed());
}
