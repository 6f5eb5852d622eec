//! NTFS images made with mkntfs and filled through ntfs-3g (FUSE, as root), read back through
//! `porthole_fs::open` and compared with the reference tree; label and serial against blkid;
//! crafted damage must give errors, not panics.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use porthole_fs::{Error, FileType, Filesystem, FsKind};
use porthole_testkit::{
    assert_same_tree, build_reference_tree, cached, mem, open, run, truncate, Fidelity,
};

/// What NTFS through ntfs-3g keeps: names (UTF-8 only), bytes, sizes, types, symlinks (as
/// Interix links), hard links and mtimes; no modes, owners or special files (ntfs-3g's
/// defaults without a user mapping).
const NTFS: Fidelity = Fidelity {
    modes: false,
    owners: false,
    symlinks: true,
    special_files: false,
    hard_links: true,
    non_utf8_names: false,
    mtimes: true,
};

/// Unmounts on drop, so a failing copy never leaves a FUSE mount behind.
struct Mounted(PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Formats `img` with mkntfs and copies `tree` into it through an ntfs-3g mount.
fn fill(img: &Path, mib: u64, label: &str, tree: &Path) {
    truncate(img, mib << 20);
    run(
        "mkntfs",
        "ntfs-3g",
        &["-F", "-Q", "-L", label, &img.display().to_string()],
        None,
    );
    let mnt = img.with_extension("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let status = std::process::Command::new("ntfs-3g")
        .arg(img)
        .arg(&mnt)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run ntfs-3g ({e}): install the Debian packages `ntfs-3g` and `fuse3`")
        });
    assert!(
        status.success(),
        "ntfs-3g could not mount {}: the NTFS tests need root and /dev/fuse (Debian packages `ntfs-3g`, `fuse3`; in a container, --device /dev/fuse)",
        img.display()
    );
    let mounted = Mounted(mnt.clone());
    let mut args = vec![
        "-R".to_string(),
        "-P".into(),
        "--preserve=timestamps,links".into(),
        "--sparse=always".into(),
    ];
    for entry in std::fs::read_dir(tree).unwrap() {
        args.push(entry.unwrap().path().display().to_string());
    }
    args.push(mnt.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("cp", "coreutils", &args, None);
    drop(mounted);
    std::fs::remove_dir(&mnt).unwrap();
}

/// The reference-tree image, plus a Windows-style loader path in mixed case.
fn image() -> (PathBuf, PathBuf) {
    let paths = cached("ntfs-64M-v1", &["img", "tree"], |p| {
        build_reference_tree(&p[1], NTFS);
        std::fs::create_dir_all(p[1].join("Windows/System32/config")).unwrap();
        std::fs::write(p[1].join("Windows/System32/config/SOFTWARE"), b"regf hive").unwrap();
        fill(&p[0], 64, "WINDISK", &p[1]);
    });
    (paths[0].clone(), paths[1].clone())
}

fn blkid(img: &Path) -> (Option<String>, Option<String>) {
    let out = run(
        "blkid",
        "util-linux",
        &["-o", "export", &img.display().to_string()],
        None,
    );
    let get = |key: &str| {
        out.lines().find_map(|l| {
            l.strip_prefix(&format!("{key}="))
                .map(|v| v.replace("\\ ", " "))
        })
    };
    (get("LABEL"), get("UUID"))
}

#[test]
fn ntfs_holds_the_reference_tree() {
    let (img, tree) = image();
    let fs = porthole_fs::open(open(&img)).unwrap();
    let info = fs.info();
    assert_eq!(info.kind, FsKind::Ntfs);
    assert_eq!((info.label.clone(), info.uuid.clone()), blkid(&img));
    assert_eq!(info.label.as_deref(), Some("WINDISK"));
    assert_same_tree(fs.as_ref(), b"/", &tree, NTFS);
}

#[test]
fn lookup_ignores_case_and_reports_metadata() {
    let (img, _) = image();
    let fs = porthole_fs::open(open(&img)).unwrap();
    for path in [
        "/Windows/System32/config/SOFTWARE",
        "/WINDOWS/system32/CONFIG/software",
    ] {
        assert_eq!(
            fs.read_file(path.as_bytes(), 64).unwrap(),
            b"regf hive",
            "{path}"
        );
    }
    let meta = fs.metadata(b"/links/hard-a").unwrap();
    assert_eq!(
        (meta.file_type, meta.mode, meta.uid, meta.nlink),
        (FileType::Regular, 0o777, 0, 2)
    );
    assert_eq!(meta.ino, fs.metadata(b"/links/hard-b").unwrap().ino);
    assert_eq!(fs.read_link(b"/link-short").unwrap(), b"sizes/file-1");
    assert_eq!(
        fs.metadata(b"/link-short").unwrap().file_type,
        FileType::Symlink
    );
    // The metadata files stay hidden, as under ntfs-3g.
    let root: Vec<_> = fs
        .read_dir(b"/")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(!root.iter().any(|n| n.starts_with(b"$")), "{root:?}");
    assert!(matches!(
        fs.metadata(b"/nothing"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        fs.read_dir(b"/etc/hostname"),
        Err(Error::NotADirectory { .. })
    ));
    assert!(matches!(
        fs.metadata(b"/etc/hostname/x"),
        Err(Error::NotADirectory { .. })
    ));
    assert!(matches!(
        fs.read_file(b"/etc", 10),
        Err(Error::IsADirectory { .. })
    ));
}
