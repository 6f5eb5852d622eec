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
    assert_same_tree, build_reference_tree, cached, open, pattern, run, truncate, Fidelity,
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

/// `blkid -o export` of an image: (LABEL, UUID).
fn blkid(img: &Path) -> (Option<String>, Option<String>) {
    let out = run("blkid", "util-linux", &["-o", "export", &s(img)], None);
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
    };
    assert_eq!(field("TYPE").as_deref(), Some("xfs"));
    (field("LABEL"), field("UUID"))
}

fn check_identity(img: &Path) {
    let fs = open_xfs(img);
    let info = fs.info();
    assert_eq!(info.kind, FsKind::Xfs);
    assert_eq!((info.label, info.uuid), blkid(img));
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
    // Without ftype the listing's types come from the inodes.
    let entries = fs.read_dir(b"/special").unwrap();
    assert!(entries.iter().any(|e| e.file_type == FileType::Fifo));
}

/// The images really hold the forms the tests claim to cover (checked with xfs_db).
#[test]
fn images_exercise_every_fork_and_directory_form() {
    let im = images();
    for img in [&im.v5, &im.v5_1k] {
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
