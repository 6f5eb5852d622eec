//! The ext2/3/4 reader against images built by `mkfs.ext4 -d` from the reference tree, in every
//! layout variant that changes how the bytes sit on disk, plus crafted corruptions of real
//! images and a deterministic mutation run over the fuzz seeds.
//!
//! Images are built per test into a temporary directory, not cached: the reference tree's
//! mtimes differ on every run and the images record them.
#![allow(clippy::unwrap_used)] // Tests: a panic is a failure report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use porthole_fs::{Error, FileType, Filesystem, FsKind};
use porthole_testkit::*;

const LABEL: &str = "porthole-ext4";
const UUID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const BLOCK: u64 = 4096;

/// A reference tree plus a file of twelve separate extents (an extent tree of depth 1), and
/// the `lost+found` that mkfs creates anyway.
struct Fixture {
    dir: tempfile::TempDir,
    tree: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        build_reference_tree(&tree, Fidelity::POSIX);
        std::fs::create_dir(tree.join("extra")).unwrap();
        write_chunks(
            &tree.join("extra/fragmented"),
            &(0..12).map(|i| i * 65536).collect::<Vec<_>>(),
            4096,
        );
        std::fs::create_dir(tree.join("lost+found")).unwrap();
        Self { dir, tree }
    }

    /// Builds a 64 MiB image of the tree with `mkfs.ext4 args`.
    fn image(&self, name: &str, args: &[&str]) -> PathBuf {
        mkfs(&self.tree, &self.dir.path().join(name), "64M", args)
    }

    /// Like [`Fixture::image`], then has `e2fsck -D` index every directory: `mkfs -d` writes
    /// only linear ones.
    fn hashed_image(&self, name: &str, args: &[&str]) -> PathBuf {
        let image = self.image(name, args);
        let status = std::process::Command::new("e2fsck")
            .args(["-fyD", &image.to_string_lossy()])
            .output()
            .unwrap_or_else(|e| panic!("cannot run e2fsck ({e}): install `e2fsprogs`"))
            .status;
        // 0: unchanged, 1: errors corrected (here: directories optimized).
        assert!(matches!(status.code(), Some(0 | 1)), "e2fsck -D: {status}");
        assert!(debugfs(&image, "htree /big-dir").contains("Root node dump"));
        image
    }
}

/// Writes a tagged pattern of `len` bytes at each offset of a new (sparse) file.
fn write_chunks(path: &Path, offsets: &[u64], len: usize) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).unwrap();
    for &at in offsets {
        f.write_all_at(&pattern(&format!("chunk{at}"), len), at)
            .unwrap();
    }
}

fn mkfs(tree: &Path, image: &Path, size: &str, args: &[&str]) -> PathBuf {
    let (tree, img) = (tree.to_string_lossy(), image.to_string_lossy());
    let mut all = vec!["-q", "-F", "-L", LABEL, "-U", UUID, "-d", &tree];
    all.extend_from_slice(args);
    all.extend_from_slice(&[&img, size]);
    run("mkfs.ext4", "e2fsprogs", &all, None);
    image.to_path_buf()
}

fn debugfs(image: &Path, request: &str) -> String {
    run(
        "debugfs",
        "e2fsprogs",
        &["-R", request, &image.to_string_lossy()],
        None,
    )
}

/// Opens `image`, checks its identity against blkid, and compares it with the tree.
fn check_variant(fx: &Fixture, name: &str, args: &[&str], kind: FsKind) {
    check_image(fx, &fx.image(name, args), kind);
}

fn check_image(fx: &Fixture, image: &Path, kind: FsKind) {
    let name = image.display();
    let fs = porthole_fs::open(open(image)).unwrap();
    let info = fs.info();
    let tags = blkid(image);
    assert_eq!(
        Some(info.kind.name().to_string()),
        tags.get("TYPE").cloned()
    );
    assert_eq!(info.kind, kind, "{name}: kind");
    assert_eq!(info.label, tags.get("LABEL").cloned());
    assert_eq!(info.uuid, tags.get("UUID").cloned());
    assert_eq!(info.uuid.as_deref(), Some(UUID));
    assert_same_tree(fs.as_ref(), b"/", &fx.tree, Fidelity::POSIX);
}

#[test]
fn default_ext4() {
    let fx = Fixture::new();
    check_variant(&fx, "ext4.img", &[], FsKind::Ext4);
    // The fragmented file really is a depth-1 extent tree.
    let image = fx.dir.path().join("ext4.img");
    assert!(debugfs(&image, "stat /extra/fragmented").contains("(ETB0)"));
}

#[test]
fn htree_directories() {
    let fx = Fixture::new();
    check_image(
        &fx,
        &fx.hashed_image("htree.img", &["-b", "4096"]),
        FsKind::Ext4,
    );
    check_image(
        &fx,
        &fx.hashed_image("htree-1k.img", &["-t", "ext3", "-b", "1024"]),
        FsKind::Ext3,
    );
}

#[test]
fn ext2_block_maps() {
    let fx = Fixture::new();
    check_variant(&fx, "ext2.img", &["-t", "ext2", "-b", "4096"], FsKind::Ext2);
}

#[test]
fn ext3_journal_and_block_maps() {
    let fx = Fixture::new();
    check_variant(&fx, "ext3.img", &["-t", "ext3", "-b", "4096"], FsKind::Ext3);
}

#[test]
fn ext4_without_extents() {
    let fx = Fixture::new();
    check_variant(&fx, "noext.img", &["-O", "^extent,^64bit"], FsKind::Ext4);
}

#[test]
fn ext4_32bit_and_64bit_descriptors() {
    let fx = Fixture::new();
    check_variant(&fx, "64.img", &["-O", "64bit", "-b", "4096"], FsKind::Ext4);
    check_variant(&fx, "32.img", &["-O", "^64bit", "-b", "4096"], FsKind::Ext4);
}

#[test]
fn one_kib_blocks() {
    let fx = Fixture::new();
    check_variant(&fx, "1k.img", &["-b", "1024"], FsKind::Ext4);
    check_variant(
        &fx,
        "1k-ext2.img",
        &["-t", "ext2", "-b", "1024", "-I", "128"],
        FsKind::Ext2,
    );
}

#[test]
fn inline_data() {
    let fx = Fixture::new();
    check_variant(&fx, "inline.img", &["-O", "inline_data"], FsKind::Ext4);
    // Make sure the layout under test really is inline: a small file and a small directory.
    let image = fx.dir.path().join("inline.img");
    for path in ["/sizes/file-60", "/etc"] {
        let stat = debugfs(&image, &format!("stat {path}"));
        assert!(stat.contains("Size of inline data"), "{path}: {stat}");
    }
}

#[test]
fn ext4_without_journal() {
    let fx = Fixture::new();
    check_variant(&fx, "nojournal.img", &["-O", "^has_journal"], FsKind::Ext4);
}

#[test]
fn xattrs_in_inode_and_block() {
    let fx = Fixture::new();
    let small = fx.tree.join("etc/hostname");
    // Too big for the inode's spare bytes: it goes to the xattr block.
    let big_value = "v".repeat(700);
    for (name, value) in [("user.small", "hello"), ("user.big", big_value.as_str())] {
        run(
            "setfattr",
            "attr",
            &["-n", name, "-v", value, &small.to_string_lossy()],
            None,
        );
    }
    let image = fx.image("xattr.img", &[]);
    let fs = porthole_fs::open(open(&image)).unwrap();
    let attrs = fs.xattrs(b"/etc/hostname").unwrap();
    let get = |n: &str| {
        attrs
            .iter()
            .find(|(k, _)| k == n.as_bytes())
            .map(|(_, v)| v)
    };
    assert_eq!(get("user.small").unwrap(), b"hello");
    assert_eq!(get("user.big").unwrap(), big_value.as_bytes());
}

#[test]
fn large_sparse_files() {
    const SIZE: u64 = 5 << 30;
    let offsets = [0, (4 << 30) - 3000, (4 << 30) + 12345, SIZE - 100];
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    write_chunks(&tree.join("huge"), &offsets, 100);
    std::fs::File::options()
        .write(true)
        .open(tree.join("huge"))
        .unwrap()
        .set_len(SIZE)
        .unwrap();
    // 4 KiB block maps reach their triple indirect block past 4 GiB, 1 KiB ones past 64 MiB.
    for (name, args) in [
        ("ext4", &["-b", "4096"][..]),
        ("ext4-1k", &["-b", "1024"][..]),
        ("ext3", &["-t", "ext3", "-b", "4096"][..]),
        ("ext2-1k", &["-t", "ext2", "-b", "1024"][..]),
    ] {
        let image = mkfs(&tree, &dir.path().join(name), "32M", args);
        let fs = porthole_fs::open(open(&image)).unwrap();
        assert_eq!(fs.metadata(b"/huge").unwrap().size, SIZE, "{name}");
        for at in offsets {
            // 50 bytes of hole, then the chunk, then hole again (or the end of the file).
            let start = at.saturating_sub(50);
            let mut buf = vec![0xAAu8; 200];
            let n = fs.read_at(b"/huge", start, &mut buf).unwrap();
            let mut want = vec![0u8; (at - start) as usize];
            want.extend(pattern(&format!("chunk{at}"), 100));
            want.resize(((SIZE - start) as usize).min(200), 0);
            assert_eq!(&buf[..n], &want[..], "{name}: read at {start}");
        }
        // A read across a long hole is zeros, and past the end nothing.
        let mut buf = vec![0xAAu8; 1 << 20];
        assert_eq!(fs.read_at(b"/huge", 3 << 30, &mut buf).unwrap(), 1 << 20);
        assert!(buf.iter().all(|&b| b == 0));
        assert_eq!(fs.read_at(b"/huge", SIZE, &mut buf).unwrap(), 0);
    }
}

#[test]
fn paths_are_lstat_and_errors_are_typed() {
    let fx = Fixture::new();
    let image = fx.image("paths.img", &[]);
    let fs = porthole_fs::open(open(&image)).unwrap();
    let meta = fs.metadata(b"/data/link-dir").unwrap();
    assert_eq!(meta.file_type, FileType::Symlink);
    assert_eq!(meta.size, 6);
    assert!(matches!(
        fs.read_dir(b"/data/link-dir/hostname"),
        Err(Error::NotADirectory { .. })
    ));
    assert!(matches!(
        fs.metadata(b"/etc/hostname/x"),
        Err(Error::NotADirectory { .. })
    ));
    assert!(matches!(
        fs.metadata(b"/etc/missing"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        fs.read_link(b"/etc/hostname"),
        Err(Error::NotASymlink { .. })
    ));
    let mut buf = [0u8; 4];
    assert!(matches!(
        fs.read_at(b"/etc", 0, &mut buf),
        Err(Error::IsADirectory { .. })
    ));
    let host = std::fs::metadata(fx.tree.join("etc/hostname")).unwrap();
    assert_eq!(
        fs.metadata(b"/etc/hostname").unwrap().ino,
        debugfs(&image, "stat /etc/hostname")
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    );
    assert_eq!(fs.metadata(b"/etc/hostname").unwrap().size, host.len());
}

/// Counts what a filesystem reads, to show opening and a lookup touch only what they need.
#[derive(Debug)]
struct Counting {
    inner: Dev,
    reads: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
}

impl porthole_image::BlockDevice for Counting {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> porthole_image::Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        self.reads.fetch_add(1, Relaxed);
        self.bytes.fetch_add(buf.len() as u64, Relaxed);
        self.inner.read_exact_at(buf, offset)
    }
}

#[test]
fn reads_only_what_it_needs() {
    use std::sync::atomic::Ordering::Relaxed;
    let fx = Fixture::new();
    let image = fx.hashed_image("count.img", &["-b", "4096"]);
    let dev = std::sync::Arc::new(Counting {
        inner: open(&image),
        reads: 0.into(),
        bytes: 0.into(),
    });
    let fs = porthole_fs::open(dev.clone()).unwrap();
    let (reads, bytes) = (dev.reads.load(Relaxed), dev.bytes.load(Relaxed));
    eprintln!("open: {reads} reads, {bytes} bytes");
    // Magic, superblock, root's group descriptor and inode.
    assert!(
        reads <= 4 && bytes <= 2048,
        "open: {reads} reads, {bytes} bytes"
    );
    fs.metadata(b"/etc/hostname").unwrap();
    let (reads, bytes) = (
        dev.reads.load(Relaxed) - reads,
        dev.bytes.load(Relaxed) - bytes,
    );
    eprintln!("stat /etc/hostname: {reads} reads, {bytes} bytes");
    assert!(
        reads <= 6 && bytes <= 3 * 4096,
        "stat: {reads} reads, {bytes} bytes"
    );
    let before = dev.bytes.load(Relaxed);
    let data = fs.read_file(b"/data/three-mib", 4 << 20).unwrap();
    let read = dev.bytes.load(Relaxed) - before;
    eprintln!("read 3 MiB file: {read} bytes");
    assert!(read < data.len() as u64 + 64 * 1024);
}

// ---- hostile images: every corruption is a clear error, never a panic or a hang ----

/// The default ext4 image of the fixture with hashed directories and 4 KiB blocks, in memory.
fn hostile_base(fx: &Fixture) -> (PathBuf, Vec<u8>) {
    let image = fx.hashed_image("base.img", &["-b", "4096"]);
    let bytes = std::fs::read(&image).unwrap();
    (image, bytes)
}

fn put(bytes: &mut [u8], at: u64, data: &[u8]) {
    let at = at as usize;
    bytes[at..at + data.len()].copy_from_slice(data);
}

/// The physical block holding logical block 0 of `path`.
fn first_block(image: &Path, path: &str) -> u64 {
    let out = debugfs(image, &format!("bmap {path} 0"));
    out.trim().parse().unwrap()
}

/// Byte offset of inode `path`, from `debugfs imap`.
fn inode_offset(image: &Path, path: &str) -> u64 {
    let out = debugfs(image, &format!("imap {path}"));
    // "Inode 12 is part of block group 0\n\tlocated at block 54, offset 0x0800"
    let words: Vec<&str> = out.split_whitespace().collect();
    let after = |w: &str, n| words[words.iter().position(|x| *x == w).unwrap() + n];
    let block: u64 = after("located", 3).trim_end_matches(',').parse().unwrap();
    let offset = u64::from_str_radix(after("offset", 1).trim_start_matches("0x"), 16).unwrap();
    block * BLOCK + offset
}

/// Opens `bytes` and walks everything reachable, bounded in time.
fn open_and_walk(bytes: Vec<u8>) -> porthole_fs::Result<Box<dyn Filesystem>> {
    let started = Instant::now();
    let fs = porthole_fs::open(mem(bytes))?;
    porthole_fs::fuzzing::walk(fs.as_ref());
    assert!(started.elapsed().as_secs() < 30, "walk took too long");
    Ok(fs)
}

fn assert_corrupt(result: porthole_fs::Result<impl std::fmt::Debug>, mentions: &str) {
    match result {
        Err(e @ Error::Corrupt { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(mentions),
                "{text:?} should mention {mentions:?}"
            );
        }
        other => panic!("expected a Corrupt error mentioning {mentions:?}, got {other:?}"),
    }
}

#[test]
fn hostile_truncated_image() {
    let fx = Fixture::new();
    let (image, bytes) = hostile_base(&fx);
    assert_corrupt(
        porthole_fs::open(mem(bytes[..1500].to_vec())).map(|_| ()),
        "superblock",
    );
    // Cut inside the big file's data: the metadata is intact, the read fails clearly.
    let cut = (first_block(&image, "/data/three-mib") + 1) * BLOCK;
    let fs = open_and_walk(bytes[..cut as usize].to_vec()).unwrap();
    assert_corrupt(fs.read_file(b"/data/three-mib", 64 << 20), "beyond the end");
}

#[test]
fn hostile_superblock_fields() {
    let fx = Fixture::new();
    let (_, bytes) = hostile_base(&fx);
    let sb = 1024u64;
    // Each case: (superblock offset, bytes) edits, and what the error must name.
    type Edits<'a> = &'a [(u64, &'a [u8])];
    let cases: [(Edits, &str); 7] = [
        (&[(0x18, &30u32.to_le_bytes())], "block size"),
        (&[(0x58, &3u16.to_le_bytes())], "inode size"),
        (&[(0x58, &0x8000u16.to_le_bytes())], "inode size"),
        (&[(0x20, &0u32.to_le_bytes())], "blocks per group"),
        (&[(0x28, &0u32.to_le_bytes())], "inodes per group"),
        (&[(0x0, &u32::MAX.to_le_bytes())], "inode count"),
        // 2^40 blocks in 8-block groups: more groups than a u32 counts.
        (
            &[
                (0x20, &8u32.to_le_bytes()),
                (0x150, &0x100u32.to_le_bytes()),
            ],
            "group count",
        ),
    ];
    for (edits, mentions) in cases {
        let mut b = bytes.clone();
        for (at, value) in edits {
            put(&mut b, sb + at, value);
        }
        assert_corrupt(porthole_fs::open(mem(b)).map(|_| ()), mentions);
    }
    // A huge but representable group count opens without touching the groups.
    let mut b = bytes.clone();
    put(&mut b, sb + 0x4, &u32::MAX.to_le_bytes());
    put(&mut b, sb + 0x20, &8u32.to_le_bytes());
    let started = Instant::now();
    let fs = porthole_fs::open(mem(b)).unwrap();
    assert!(fs.read_dir(b"/").is_ok());
    assert!(started.elapsed().as_secs() < 5);
}

#[test]
fn hostile_extent_loop() {
    let fx = Fixture::new();
    let (image, mut bytes) = hostile_base(&fx);
    let stat = debugfs(&image, "stat /extra/fragmented");
    let etb: u64 = stat
        .split("(ETB0):")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Turn the leaf into an index node of depth 1 whose only child is itself.
    let at = etb * BLOCK;
    put(&mut bytes, at + 2, &1u16.to_le_bytes());
    put(&mut bytes, at + 6, &1u16.to_le_bytes());
    put(&mut bytes, at + 12, &0u32.to_le_bytes());
    put(&mut bytes, at + 16, &(etb as u32).to_le_bytes());
    put(&mut bytes, at + 20, &0u16.to_le_bytes());
    let fs = open_and_walk(bytes).unwrap();
    assert_corrupt(fs.read_file(b"/extra/fragmented", 1 << 20), "depth");
}

#[test]
fn hostile_rec_len_zero() {
    let fx = Fixture::new();
    let (image, mut bytes) = hostile_base(&fx);
    let at = first_block(&image, "/etc") * BLOCK;
    put(&mut bytes, at + 4, &0u16.to_le_bytes());
    let fs = open_and_walk(bytes).unwrap();
    assert_corrupt(fs.read_dir(b"/etc"), "record length 0");
    assert_corrupt(fs.metadata(b"/etc/hostname"), "record length 0");
}

#[test]
fn hostile_htree_loop() {
    let fx = Fixture::new();
    let (image, mut bytes) = hostile_base(&fx);
    // dx_root: point every index entry back at block 0 (the root itself) and claim an
    // extra level, so a reader following the index would loop.
    let root = first_block(&image, "/big-dir") * BLOCK;
    let count = u64::from(u16::from_le_bytes(
        bytes[root as usize + 34..root as usize + 36]
            .try_into()
            .unwrap(),
    ));
    put(&mut bytes, root + 30, &[1]);
    for i in 0..count {
        put(&mut bytes, root + 36 + 8 * i, &0u32.to_le_bytes());
    }
    // The index is not trusted: the directory still reads completely, by its leaf blocks.
    let fs = open_and_walk(bytes).unwrap();
    assert_eq!(fs.read_dir(b"/big-dir").unwrap().len(), 2000);
    assert_eq!(
        fs.read_file(b"/big-dir/entry-1900-with-a-longer-name", 4096)
            .unwrap(),
        pattern("entry1900", 2000)
    );
}

#[test]
fn hostile_symlink_size() {
    let fx = Fixture::new();
    let (image, mut bytes) = hostile_base(&fx);
    let at = inode_offset(&image, "/link-long");
    put(&mut bytes, at + 4, &u32::MAX.to_le_bytes());
    put(&mut bytes, at + 0x6C, &0xFFFFu32.to_le_bytes());
    // A fast symlink claiming a slow one's size: its target text read as block pointers.
    let short = inode_offset(&image, "/link-short");
    put(&mut bytes, short + 4, &1000u32.to_le_bytes());
    let fs = open_and_walk(bytes).unwrap();
    assert!(matches!(
        fs.read_link(b"/link-long"),
        Err(Error::LimitExceeded { .. })
    ));
    assert!(fs.read_link(b"/link-short").is_err());
}

// ---- deterministic mutations of the fuzz seeds ----

use porthole_mutate::Rng;

fn seeds() -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/ext4");
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 3, "seeds missing in {}", dir.display());
    seeds
}

#[test]
fn seeds_read_cleanly() {
    for (path, bytes) in seeds() {
        let fs = porthole_fs::open(mem(bytes)).unwrap();
        let listed = fs.read_dir(b"/").unwrap();
        assert!(listed.len() >= 3, "{}: {listed:?}", path.display());
    }
}

/// Bit flips, edge values and truncations, mostly in the seed's metadata (its non-zero
/// 256-byte chunks), each image opened and walked by the fuzz entry point.
#[test]
fn mutated_seeds_never_panic() {
    let started = Instant::now();
    for (path, seed) in seeds() {
        let hot: Vec<usize> = (0..seed.len() / 256)
            .filter(|&i| seed[i * 256..(i + 1) * 256].iter().any(|&b| b != 0))
            .collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed.len() as u64);
        for _ in 0..1000 {
            let mut data = seed.clone();
            for _ in 0..1 + rng.below(4) {
                if data.len() < seed.len() {
                    break; // truncated: later positions may be gone
                }
                let pos = hot[rng.below(hot.len())] * 256 + rng.below(256);
                let edge = [0, 1, u64::MAX, u64::from(u32::MAX), rng.next()][rng.below(5)];
                match rng.below(6) {
                    0..=2 => data[pos] ^= 1 << rng.below(8),
                    3 => {
                        let at = pos & !1;
                        data[at..at + 2].copy_from_slice(&(edge as u16).to_le_bytes());
                    }
                    4 => {
                        let at = pos & !3;
                        data[at..at + 4].copy_from_slice(&(edge as u32).to_le_bytes());
                    }
                    _ if rng.below(8) == 0 => data.truncate(pos),
                    _ => data[pos] = rng.next() as u8,
                }
            }
            porthole_fs::fuzzing::fuzz_filesystem(&data);
        }
        eprintln!("{}: done after {:?}", path.display(), started.elapsed());
    }
}
