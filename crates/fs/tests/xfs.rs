//! The XFS reader against real images.
//!
//! v5 images are made the way an installer would: mkfs.xfs on a sparse file, loop-mounted, the
//! reference tree copied in with `cp -a`, then changed in place (directories grown in turns so
//! their blocks fragment into B+tree-mapped forms, preallocated unwritten extents). v4 images go
//! through `mkfs.xfs -p protofile` instead: Debian 12's xfsprogs still makes them, but current
//! kernels refuse to mount them ("Deprecated V4 format (crc=0) not supported by kernel"), and a
//! protofile cannot record mtimes, hard links or names with spaces, so the v4 comparison leaves
//! those out.
//!
//! The small images for the hostile and fuzz tests are made with `mkfs.xfs -p` and an external
//! log, under fstests' environment variables that lift mkfs.xfs's 300 MB minimum; everything
//! they hold then sits in their first few KiB and the rest is cut off.
#![allow(clippy::unwrap_used)]

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use porthole_fs::{Error, FileType, Filesystem, FsKind};
use porthole_testkit::{
    assert_same_tree, blkid, build_reference_tree, cached, open, pattern, run, truncate, Fidelity,
};

const XFSPROGS: &str = "xfsprogs";
/// mkfs.xfs refuses smaller filesystems.
const IMAGE_SIZE: u64 = 320 << 20;
/// What a protofile records: no mtimes (mkfs stamps its own) and no hard links.
const PROTO: Fidelity = Fidelity {
    mtimes: false,
    hard_links: false,
    ..Fidelity::POSIX
};
const FIXED_MTIME: &str = "@1000000000";

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// Structures beyond the reference tree: directories of each size class (short form, block,
/// leaf; the tree's 2,000-entry directory is a node directory), a file of 400 separate extents
/// (a B+tree data fork), a symlink target too long for the inode, a user xattr.
fn add_extras(root: &Path) {
    for name in ["a", "b", "c"] {
        write(&root.join("dirs/short").join(name), name.as_bytes());
    }
    for i in 0..40 {
        write(&root.join(format!("dirs/block/entry-{i:03}")), b"");
    }
    for i in 0..250 {
        write(
            &root.join(format!("dirs/leaf/leaf-entry-{i:04}-padding")),
            b"",
        );
    }
    let holey = root.join("frag/holey");
    write(&holey, b"");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&holey)
        .unwrap();
    for i in 0..400u64 {
        f.write_all_at(&pattern(&format!("piece{i}"), 4096), i * 8192)
            .unwrap();
    }
    let target = format!("{}end", "far/".repeat(249));
    std::os::unix::fs::symlink(target, root.join("links/very-long")).unwrap();
    let xattr = root.join("xattr/file");
    write(&xattr, b"has an xattr\n");
    run(
        "setfattr",
        "attr",
        &["-n", "user.porthole", "-v", "hello", &s(&xattr)],
        None,
    );
}

/// Done on the mounted filesystem and, identically, on the tree: three directories grown in
/// turns with long names, so each one's blocks interleave with the others' (many extents: a
/// B+tree-mapped directory), and a preallocated file with one written block (unwritten
/// extents around it). Every file gets the same mtime on both sides.
fn grow_in_place(root: &Path, on_xfs: bool) {
    let dirs: Vec<PathBuf> = ["a", "b", "c"]
        .iter()
        .map(|d| root.join("frag-dirs").join(d))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    for i in 0..1200 {
        for d in &dirs {
            std::fs::write(d.join(format!("{i:05}-{}", "n".repeat(200))), b"").unwrap();
        }
    }
    let prealloc = root.join("frag/prealloc");
    if on_xfs {
        run(
            "xfs_io",
            XFSPROGS,
            &[
                "-f",
                "-c",
                "falloc 0 1m",
                "-c",
                "pwrite -S 0xab 256k 4k",
                &s(&prealloc),
            ],
            None,
        );
        run("chmod", "coreutils", &["644", &s(&prealloc)], None);
    } else {
        let mut data = vec![0u8; 1 << 20];
        data[256 << 10..(256 << 10) + 4096].fill(0xab);
        std::fs::write(&prealloc, data).unwrap();
    }
    for p in [root.join("frag-dirs"), prealloc] {
        run(
            "find",
            "findutils",
            &[
                &s(&p),
                "-type",
                "f",
                "-exec",
                "touch",
                "-m",
                "-d",
                FIXED_MTIME,
                "{}",
                "+",
            ],
            None,
        );
    }
}

/// mkfs.xfs `args` on a fresh sparse image, loop-mounted, the tree copied in, grown in place.
fn mounted_image(img: &Path, tree: &Path, args: &[&str]) {
    truncate(img, IMAGE_SIZE);
    let mut all = vec!["-q", "-f"];
    all.extend_from_slice(args);
    let img_s = s(img);
    all.push(&img_s);
    run("mkfs.xfs", XFSPROGS, &all, None);
    let mnt = img.with_extension("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run("mount", "mount", &["-o", "loop", &img_s, &s(&mnt)], None);
    let copy = std::process::Command::new("cp")
        .args(["-a", &format!("{}/.", s(tree)), &s(&mnt)])
        .status();
    let grown = copy.is_ok() && std::panic::catch_unwind(|| grow_in_place(&mnt, true)).is_ok();
    run("umount", "mount", &[&s(&mnt)], None);
    assert!(copy.unwrap().success() && grown, "filling {img_s} failed");
}

/// A protofile for `tree`, and the directories whose sticky bit it cannot express.
fn protofile(tree: &Path) -> (Vec<u8>, Vec<String>) {
    let mut out = b"/dev/null\n0 0\n".to_vec();
    let meta = std::fs::metadata(tree).unwrap();
    out.extend(
        format!(
            "d--{:03o} {} {}\n",
            meta.mode() & 0o777,
            meta.uid(),
            meta.gid()
        )
        .bytes(),
    );
    let mut sticky = Vec::new();
    proto_dir(tree, "", &mut out, &mut sticky);
    out.extend(b"$\n");
    (out, sticky)
}

fn proto_dir(dir: &Path, rel: &str, out: &mut Vec<u8>, sticky: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let meta = e.path().symlink_metadata().unwrap();
        let mode = meta.mode();
        let t = meta.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = match () {
            _ if t.is_dir() => 'd',
            _ if t.is_symlink() => 'l',
            _ if t.is_fifo() => 'p',
            _ if t.is_char_device() => 'c',
            _ if t.is_block_device() => 'b',
            _ => '-',
        };
        let suid = if mode & 0o4000 != 0 { 'u' } else { '-' };
        let sgid = if mode & 0o2000 != 0 { 'g' } else { '-' };
        out.extend(e.file_name().as_bytes());
        out.extend(
            format!(
                " {kind}{suid}{sgid}{:03o} {} {}",
                mode & 0o777,
                meta.uid(),
                meta.gid()
            )
            .bytes(),
        );
        match kind {
            '-' => {
                out.push(b' ');
                out.extend(e.path().as_os_str().as_bytes());
            }
            'l' => {
                out.push(b' ');
                out.extend(std::fs::read_link(e.path()).unwrap().as_os_str().as_bytes());
            }
            'c' | 'b' => {
                let rdev = meta.rdev();
                out.extend(format!(" {} {}", (rdev >> 8) & 0xfff, rdev & 0xff).bytes());
            }
            _ => {}
        }
        out.push(b'\n');
        if kind == 'd' {
            let child = format!("{rel}/{}", e.file_name().to_string_lossy());
            if mode & 0o1000 != 0 {
                sticky.push(child.clone());
            }
            proto_dir(&e.path(), &child, out, sticky);
            out.extend(b"$\n");
        }
    }
}

/// `mkfs.xfs -p` of `tree` into `img` (`env` holds extra environment settings), then the sticky
/// bits the protofile cannot carry set with xfs_db.
fn proto_image(img: &Path, tree: &Path, env: &[&str], args: &[&str]) {
    run("mkfs.xfs", XFSPROGS, &["-V"], None);
    let (proto, sticky) = protofile(tree);
    let proto_path = img.with_extension("proto");
    std::fs::write(&proto_path, proto).unwrap();
    let (img_s, proto_s) = (s(img), s(&proto_path));
    let mut all: Vec<&str> = env.to_vec();
    all.extend(["mkfs.xfs", "-q", "-f", "-p", &proto_s]);
    all.extend_from_slice(args);
    all.push(&img_s);
    run("env", "coreutils", &all, None);
    for dir in sticky {
        let mut db = vec!["-x"];
        let log = args.iter().find_map(|a| a.strip_prefix("-l logdev="));
        let log_args;
        if let Some(l) = log {
            log_args = ["-l".to_string(), l.to_string()];
            db.extend(log_args.iter().map(String::as_str));
        }
        let (path, write) = (format!("path {dir}"), "write core.mode 041777".to_string());
        db.extend(["-c", &path, "-c", &write, &img_s]);
        run("xfs_db", XFSPROGS, &db, None);
    }
}

struct Images {
    tree: PathBuf,
    v4_tree: PathBuf,
    v5: PathBuf,
    v5_1k: PathBuf,
    v4: PathBuf,
}

fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let names = ["tree", "v4-tree", "v5.img", "v5-1k.img", "v4.img"];
        let p = cached("xfs images v2", &names, |p| {
            // A build that panicked earlier in this process left its half-made files behind.
            for q in p {
                let _ = std::fs::remove_dir_all(q);
                let _ = std::fs::remove_file(q);
            }
            build_reference_tree(&p[0], Fidelity::POSIX);
            add_extras(&p[0]);
            mounted_image(&p[2], &p[0], &["-L", "porthole-v5"]);
            mounted_image(&p[3], &p[0], &["-b", "size=1024", "-n", "size=4096"]);
            grow_in_place(&p[0], false);
            // The v4 tree: the same, less what a protofile cannot name.
            run("cp", "coreutils", &["-a", &s(&p[0]), &s(&p[1])], None);
            std::fs::remove_file(p[1].join("names/with space and 'quote'")).unwrap();
            truncate(&p[4], IMAGE_SIZE);
            proto_image(
                &p[4],
                &p[1],
                &[],
                &[
                    "-m",
                    "crc=0",
                    "-n",
                    "ftype=0",
                    "-b",
                    "size=1024",
                    "-L",
                    "portholev4",
                ],
            );
        });
        let mut it = p.into_iter();
        let mut next = || it.next().unwrap();
        Images {
            tree: next(),
            v4_tree: next(),
            v5: next(),
            v5_1k: next(),
            v4: next(),
        }
    })
}

fn open_xfs(img: &Path) -> Box<dyn Filesystem> {
    porthole_fs::open(open(img)).unwrap()
}

fn check_identity(img: &Path) {
    let fs = open_xfs(img);
    let info = fs.info();
    assert_eq!(info.kind, FsKind::Xfs);
    let tags = blkid(img);
    assert_eq!(tags.get("TYPE").map(String::as_str), Some("xfs"));
    assert_eq!(
        (info.label, info.uuid),
        (tags.get("LABEL").cloned(), tags.get("UUID").cloned())
    );
}

/// The data fork format (`core.format`) of `path` in `img`, as xfs_db reads it.
fn xfs_db_format(img: &Path, path: &str) -> String {
    let out = run(
        "xfs_db",
        XFSPROGS,
        &[
            "-r",
            "-c",
            &format!("path {path}"),
            "-c",
            "print core.format",
            &s(img),
        ],
        None,
    );
    out.trim().to_string()
}

/// Logical byte offsets of the extents of `path`'s data fork (xfs_db `bmap`).
fn bmap_offsets(img: &Path, path: &str, block_size: u64) -> Vec<u64> {
    let out = run(
        "xfs_db",
        XFSPROGS,
        &["-r", "-c", &format!("path {path}"), "-c", "bmap", &s(img)],
        None,
    );
    out.lines()
        .filter_map(|l| l.strip_prefix("data offset "))
        .map(|l| l.split(' ').next().unwrap().parse::<u64>().unwrap() * block_size)
        .collect()
}

/// Block, leaf or node: which of the leaf (32 GiB) and free-index (64 GiB) regions of a
/// directory's logical space are in use.
fn dir_form(img: &Path, path: &str, block_size: u64) -> &'static str {
    let offsets = bmap_offsets(img, path, block_size);
    match (
        offsets.iter().any(|&o| o >= 32 << 30),
        offsets.iter().any(|&o| o >= 64 << 30),
    ) {
        (_, true) => "node",
        (true, false) => "leaf",
        _ => "block",
    }
}

#[test]
fn v5_4k_holds_the_reference_tree() {
    let im = images();
    let fs = open_xfs(&im.v5);
    assert_same_tree(fs.as_ref(), b"/", &im.tree, Fidelity::POSIX);
    check_identity(&im.v5);
}

#[test]
fn v5_1k_blocks_4k_directory_blocks_hold_the_reference_tree() {
    let im = images();
    let fs = open_xfs(&im.v5_1k);
    assert_same_tree(fs.as_ref(), b"/", &im.tree, Fidelity::POSIX);
    check_identity(&im.v5_1k);
}

#[test]
fn v4_without_ftype_holds_the_reference_tree() {
    let im = images();
    let fs = open_xfs(&im.v4);
    assert_same_tree(fs.as_ref(), b"/", &im.v4_tree, PROTO);
    check_identity(&im.v4);
    // mkfs stamps the time it ran (v4 has no bigtime: 32-bit seconds).
    let built = std::fs::metadata(&im.v4).unwrap().mtime();
    let stamped = fs.metadata(b"/etc/hostname").unwrap().mtime.unwrap();
    assert!((stamped - built).abs() < 3600, "{stamped} vs {built}");
    // Without ftype the listing's types come from the inodes.
    let entries = fs.read_dir(b"/special").unwrap();
    assert!(entries.iter().any(|e| e.file_type == FileType::Fifo));
}

/// The images really hold the forms the tests claim to cover (checked with xfs_db).
#[test]
fn images_exercise_every_fork_and_directory_form() {
    let im = images();
    for (img, bs) in [(&im.v5, 4096), (&im.v5_1k, 1024)] {
        assert_eq!(dir_form(img, "/dirs/block", bs), "block");
        assert_eq!(dir_form(img, "/dirs/leaf", bs), "leaf");
        assert_eq!(dir_form(img, "/big-dir", bs), "node");
        assert!(xfs_db_format(img, "/dirs/short").contains("(local)"));
        assert!(xfs_db_format(img, "/dirs/block").contains("(extents)"));
        assert!(xfs_db_format(img, "/frag/holey").contains("(btree)"));
        assert!(xfs_db_format(img, "/link-short").contains("(local)"));
        assert!(xfs_db_format(img, "/links/very-long").contains("(extents)"));
        assert!(
            xfs_db_format(img, "/frag-dirs/a").contains("(btree)"),
            "{img:?}"
        );
    }
    let fs = open_xfs(&im.v5);
    let xattrs = fs.xattrs(b"/xattr/file").unwrap();
    assert!(xattrs.contains(&(b"user.porthole".to_vec(), b"hello".to_vec())));
}

#[test]
fn lstat_semantics() {
    let fs = open_xfs(&images().v5);
    let link = fs.metadata(b"/data/link-dir").unwrap();
    assert_eq!(link.file_type, FileType::Symlink);
    assert!(matches!(
        fs.read_dir(b"/data/link-dir"),
        Err(Error::NotADirectory { .. })
    ));
    assert!(matches!(
        fs.metadata(b"/data/link-dir/hostname"),
        Err(Error::NotADirectory { .. })
    ));
    assert!(matches!(fs.metadata(b"/nope"), Err(Error::NotFound { .. })));
    assert!(matches!(
        fs.read_file(b"/etc", 1 << 20),
        Err(Error::IsADirectory { .. })
    ));
    assert!(matches!(
        fs.read_link(b"/etc/hostname"),
        Err(Error::NotASymlink { .. })
    ));
    assert_eq!(fs.metadata(b"/").unwrap().file_type, FileType::Directory);
}

// ---- small images: hostile structures and fuzzing ----

/// A small tree: a short file, a file of many pieces, a leaf directory, a short-form directory,
/// inline and (if `remote_link`) remote symlinks, a FIFO. mkfs.xfs 6.1's protofile code writes
/// v5 remote symlinks without their `XSLM` block header (the kernel rejects such links too), so
/// the v5 small tree has none; the mounted v5 images cover them.
fn small_tree(root: &Path, remote_link: bool) {
    std::fs::create_dir(root).unwrap();
    write(&root.join("hello"), b"hello, xfs\n");
    let pieces = root.join("pieces");
    write(&pieces, b"");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&pieces)
        .unwrap();
    for i in 0..16u64 {
        f.write_all_at(&pattern(&format!("p{i}"), 700), i * 2048)
            .unwrap();
    }
    for i in 0..30 {
        let name = format!("d/file-with-name-{i:02}-{}", "x".repeat(130));
        write(&root.join(name), b"x");
    }
    write(&root.join("s/one"), b"1");
    std::os::unix::fs::symlink("hello", root.join("inline-link")).unwrap();
    if remote_link {
        std::os::unix::fs::symlink("r/".repeat(300), root.join("remote-link")).unwrap();
    }
    run("mkfifo", "coreutils", &[&s(&root.join("fifo"))], None);
}

/// `mkfs.xfs -p` into a 16 MiB image with an external log, cut after its last non-zero
/// sector. mkfs.xfs refuses filesystems under 300 MB unless fstests' variables are set.
fn small_image(img: &Path, tree: &Path, args: &[&str]) {
    let log = img.with_extension("log");
    truncate(img, 16 << 20);
    truncate(&log, 16 << 20);
    let log_arg = format!("-l logdev={}", s(&log));
    let mut all = vec!["-d", "agcount=1"];
    all.extend_from_slice(args);
    all.extend(log_arg.split_once(' ').map(|(a, b)| [a, b]).unwrap());
    proto_image(
        img,
        tree,
        &["TEST_DIR=1", "TEST_DEV=1", "QA_CHECK_FS=1"],
        &all,
    );
    let data = std::fs::read(img).unwrap();
    let end = data.iter().rposition(|&b| b != 0).unwrap() + 1;
    std::fs::write(img, &data[..end.next_multiple_of(4096)]).unwrap();
    std::fs::remove_file(log).unwrap();
}

struct Small {
    v4_tree: PathBuf,
    v5_tree: PathBuf,
    v4: Vec<u8>,
    v5: Vec<u8>,
}

fn small() -> &'static Small {
    static SMALL: OnceLock<Small> = OnceLock::new();
    SMALL.get_or_init(|| {
        let names = ["v4-tree", "v5-tree", "v4.img", "v5.img"];
        let p = cached("xfs small images v4", &names, |p| {
            for q in p {
                let _ = std::fs::remove_dir_all(q);
                let _ = std::fs::remove_file(q);
            }
            small_tree(&p[0], true);
            small_tree(&p[1], false);
            small_image(&p[2], &p[0], &["-m", "crc=0", "-b", "size=512"]);
            small_image(
                &p[3],
                &p[1],
                &["-m", "crc=1", "-b", "size=1024", "-i", "size=512"],
            );
        });
        Small {
            v4_tree: p[0].clone(),
            v5_tree: p[1].clone(),
            v4: std::fs::read(&p[2]).unwrap(),
            v5: std::fs::read(&p[3]).unwrap(),
        }
    })
}

fn open_mem(data: &[u8]) -> porthole_fs::Result<Box<dyn Filesystem>> {
    porthole_fs::open(porthole_testkit::mem(data.to_vec()))
}

#[test]
fn small_cut_images_hold_their_tree() {
    let sm = small();
    for (img, tree) in [(&sm.v4, &sm.v4_tree), (&sm.v5, &sm.v5_tree)] {
        assert!(img.len() <= 128 << 10, "small image is {} bytes", img.len());
        let fs = open_mem(img).unwrap();
        assert_same_tree(fs.as_ref(), b"/", tree, PROTO);
    }
}

fn put(img: &mut [u8], at: usize, bytes: &[u8]) {
    img[at..at + bytes.len()].copy_from_slice(bytes);
}

fn be16(img: &[u8], at: usize) -> usize {
    u16::from_be_bytes([img[at], img[at + 1]]).into()
}

fn corrupt_at(r: porthole_fs::Result<impl std::fmt::Debug>) -> (u64, String) {
    match r {
        Err(Error::Corrupt { offset, what, .. }) => (offset, what),
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[test]
fn truncated_image_fails_cleanly() {
    let sm = small();
    assert!(matches!(open_mem(&sm.v4[..100]), Err(Error::Device(_))));
    // Cut inside the file data: the filesystem opens, and what lies past the end fails.
    let big = std::fs::read(&images().v5).unwrap();
    let fs = open_mem(&big[..1 << 20]).unwrap();
    assert!(fs.read_file(b"/data/three-mib", 16 << 20).is_err());
    porthole_fs::fuzzing::walk(fs.as_ref());
}

#[test]
fn absurd_superblocks_are_rejected() {
    let sm = small();
    let cases: [(usize, &[u8]); 5] = [
        (88, &[0xff, 0xff, 0xff, 0xff]), // sb_agcount
        (4, &[0, 0, 0, 3]),              // sb_blocksize
        (4, &[0x40, 0, 0, 0]),           // sb_blocksize 1 GiB
        (104, &[0xff, 0xff]),            // sb_inodesize
        (84, &[0, 0, 0, 0]),             // sb_agblocks
    ];
    for (at, bytes) in cases {
        let mut img = sm.v4.clone();
        put(&mut img, at, bytes);
        let (offset, what) = corrupt_at(open_mem(&img));
        assert!(offset < 512, "{what} at {offset}");
    }
}

/// Geometry of the small v4 image: (block size, inode size, inodes-per-block log, AG block log).
fn geometry(img: &[u8]) -> (usize, usize, u32, u32) {
    let bs = u32::from_be_bytes(img[4..8].try_into().unwrap()) as usize;
    (bs, be16(img, 104), img[123].into(), img[124].into())
}

fn inode_offset(img: &[u8], ino: u64) -> usize {
    let (bs, isize, inopb_log, agblk_log) = geometry(img);
    assert_eq!(
        ino >> (inopb_log + agblk_log),
        0,
        "small images have one AG"
    );
    ((ino >> inopb_log) as usize) * bs + (ino as usize & ((1 << inopb_log) - 1)) * isize
}

/// Turns `path`'s data fork into a bmbt whose level-1 block points at itself.
fn self_looping_bmbt(path: &[u8]) -> Vec<u8> {
    let sm = small();
    let mut img = sm.v4.clone();
    let (bs, isize, _, _) = geometry(&img);
    let ino = open_mem(&img).unwrap().metadata(path).unwrap().ino;
    let at = inode_offset(&img, ino);
    let loop_block = img.len() / bs;
    img.resize(img.len() + bs, 0);
    put(&mut img, at + 5, &[3]); // di_format: btree
    put(&mut img, at + 82, &[0]); // no attribute fork
    let fork = at + 100;
    let maxrecs = (isize - 100 - 4) / 16;
    put(&mut img, fork, &[0, 2, 0, 1]); // level 2, one record
    put(
        &mut img,
        fork + 4 + maxrecs * 8,
        &(loop_block as u64).to_be_bytes(),
    );
    let blk = loop_block * bs;
    put(&mut img, blk, b"BMAP\x00\x01\x00\x01"); // level 1, one record
    let maxrecs = (bs - 24) / 16;
    put(
        &mut img,
        blk + 24 + maxrecs * 8,
        &(loop_block as u64).to_be_bytes(),
    );
    img
}

#[test]
fn self_looping_bmbt_is_an_error() {
    let img = self_looping_bmbt(b"/pieces");
    let fs = open_mem(&img).unwrap();
    let (_, what) = corrupt_at(fs.read_file(b"/pieces", 1 << 20));
    assert!(what.contains("level"), "{what}");
    let img = self_looping_bmbt(b"/d");
    let fs = open_mem(&img).unwrap();
    let (_, what) = corrupt_at(fs.read_dir(b"/d"));
    assert!(what.contains("level"), "{what}");
}

#[test]
fn directory_name_length_past_the_block_is_an_error() {
    let sm = small();
    let mut img = sm.v4.clone();
    // The entry placed last in its directory block, where 255 bytes of name cannot fit.
    let dir_block = 512 << img[192];
    let name = b"file-with-name-";
    let start = |i: usize| {
        (0..=i / 512)
            .rev()
            .map(|b| b * 512)
            .find(|&b| &img[b..b + 4] == b"XD2D")
            .unwrap()
    };
    let at = (0..img.len() - name.len())
        .filter(|&i| &img[i..i + name.len()] == name)
        .max_by_key(|&i| i - start(i))
        .unwrap();
    assert!(at - start(at) > dir_block - 256);
    img[at - 1] = 0xff;
    let fs = open_mem(&img).unwrap();
    let (offset, what) = corrupt_at(fs.read_dir(b"/d"));
    assert_eq!(offset, at as u64 - 1, "{what}");
    assert!(what.contains("name length"), "{what}");
    // Short form: an entry running past the inode fork.
    let mut img = sm.v4.clone();
    let ino = open_mem(&img).unwrap().metadata(b"/s").unwrap().ino;
    let fork = inode_offset(&img, ino) + 100;
    img[fork + 6] = 0xff; // first entry's name length (after count, i8count, 4-byte parent)
    let fs = open_mem(&img).unwrap();
    corrupt_at(fs.read_dir(b"/s"));
}

use porthole_mutate::Rng;

/// Mutates the non-zero (metadata) sectors of `seed` `rounds` times, walking each result.
fn mutate_and_walk(seed: &[u8], rounds: usize, rng: &mut Rng) {
    let sectors: Vec<usize> = (0..seed.len() / 512)
        .filter(|i| seed[i * 512..(i + 1) * 512].iter().any(|&b| b != 0))
        .collect();
    for _ in 0..rounds {
        let mut data = seed.to_vec();
        for _ in 0..1 + rng.below(4) {
            let sector = sectors[rng.below(sectors.len())];
            let at = sector * 512 + rng.below(512);
            data[at] = match rng.below(4) {
                0 => data[at] ^ (1 << rng.below(8)),
                1 => rng.next() as u8,
                2 => 0xff,
                _ => 0,
            };
        }
        porthole_fs::fuzzing::fuzz_filesystem(&data);
    }
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/xfs");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    seeds
}

#[test]
fn corpus_seeds_are_small_readable_xfs_images() {
    let seeds = corpus();
    assert!(seeds.len() >= 2);
    for seed in seeds {
        assert!(seed.len() <= 128 << 10);
        let fs = open_mem(&seed).unwrap();
        assert!(!fs.read_dir(b"/").unwrap().is_empty());
    }
}

#[test]
fn fuzz_entry_point_survives_metadata_mutations() {
    let sm = small();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = std::time::Instant::now();
    for seed in [&sm.v4, &sm.v5] {
        porthole_fs::fuzzing::fuzz_filesystem(seed);
        mutate_and_walk(seed, 1500, &mut rng);
    }
    for seed in corpus() {
        mutate_and_walk(&seed, 300, &mut rng);
    }
    eprintln!("mutation runs took {:?}", started.elapsed());
}
