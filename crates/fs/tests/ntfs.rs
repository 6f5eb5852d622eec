//! NTFS images made with mkntfs and filled through ntfs-3g (FUSE, as root), read back through
//! `porthole_fs::open` and compared with the reference tree; label and serial against blkid;
//! crafted damage must give errors, not panics.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use porthole_fs::{Error, FileType, Filesystem, FsKind};

use porthole_testkit::{
    assert_same_tree, blkid_label_uuid, build_reference_tree, cached, mem, open, run, truncate,
    Fidelity,
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
    // Unmounted on drop, so a failing copy never leaves a FUSE mount behind.
    let mounted = porthole_testkit::kernel::Mount(mnt.clone());
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

#[test]
fn ntfs_holds_the_reference_tree() {
    let (img, tree) = image();
    let fs = porthole_fs::open(open(&img)).unwrap();
    let info = fs.info();
    assert_eq!(info.kind, FsKind::Ntfs);
    assert_eq!(
        (info.label.clone(), info.uuid.clone()),
        blkid_label_uuid(&img)
    );
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

/// A 2 MiB volume (mkntfs's smallest) with a directory of 40 names (an $INDEX_ALLOCATION), a
/// file and a symlink: the seed for the damage and mutation tests.
fn small_image() -> Vec<u8> {
    let paths = cached("ntfs-small-v1", &["img"], |p| {
        let src = p[0].with_extension("src");
        std::fs::create_dir_all(src.join("dir")).unwrap();
        std::fs::write(src.join("dir/Hello.txt"), b"hello\n").unwrap();
        for i in 0..40 {
            std::fs::write(src.join(format!("dir/file-with-long-name-{i}")), b"").unwrap();
        }
        std::os::unix::fs::symlink("dir/Hello.txt", src.join("link")).unwrap();
        fill(&p[0], 2, "SEED", &src);
        std::fs::remove_dir_all(&src).unwrap();
    });
    std::fs::read(&paths[0]).unwrap()
}

fn open_bytes(bytes: Vec<u8>) -> porthole_fs::Result<Box<dyn Filesystem>> {
    porthole_fs::open(mem(bytes))
}

/// Byte offset of the MFT (from the boot sector of a volume with 512-byte sectors).
fn mft_offset(img: &[u8]) -> usize {
    let cluster = usize::from(img[13]) * 512;
    u64::from_le_bytes(img[0x30..0x38].try_into().unwrap()) as usize * cluster
}

#[test]
fn small_image_reads() {
    let fs = open_bytes(small_image()).unwrap();
    assert_eq!(fs.read_file(b"/DIR/hello.TXT", 64).unwrap(), b"hello\n");
    assert_eq!(fs.read_dir(b"/dir").unwrap().len(), 41);
    assert_eq!(fs.read_link(b"/link").unwrap(), b"dir/Hello.txt");
}

#[test]
fn absurd_boot_sector_fields_are_corrupt() {
    let good = small_image();
    // bytes per sector 0, sectors per cluster 0 and 3, MFT record size 127 clusters, index
    // record size 2^-1, MFT beyond the device.
    let cases: [(usize, &[u8]); 6] = [
        (11, &[0, 0]),
        (13, &[0]),
        (13, &[3]),
        (0x40, &[0x7F]),
        (0x44, &[0xFF]),
        (0x30, &[0, 0, 0, 0, 0, 0, 0, 0x40]),
    ];
    for (at, bytes) in cases {
        let mut img = good.clone();
        img[at..at + bytes.len()].copy_from_slice(bytes);
        match open_bytes(img) {
            Err(Error::Corrupt { fs: "ntfs", .. }) => {}
            other => panic!("field at {at:#x} = {bytes:?}: {other:?}"),
        }
    }
}

#[test]
fn lying_attribute_lengths_are_errors() {
    let good = small_image();
    let fs = open_bytes(good.clone()).unwrap();
    let hello = fs.metadata(b"/dir/Hello.txt").unwrap().ino as usize;
    let mft = mft_offset(&good);
    for (record, open_fails) in [(5usize, true), (hello, false)] {
        for length in [0u32, 7, 0x1000, 0xFFFF_FFF0] {
            let mut img = good.clone();
            let rec = mft + record * 1024;
            let first = usize::from(u16::from_le_bytes([img[rec + 0x14], img[rec + 0x15]]));
            img[rec + first + 4..rec + first + 8].copy_from_slice(&length.to_le_bytes());
            match open_bytes(img) {
                Ok(fs) if !open_fails => {
                    assert!(
                        fs.read_file(b"/dir/Hello.txt", 64).is_err(),
                        "record {record} length {length}"
                    );
                    porthole_fs::fuzzing::walk(fs.as_ref());
                }
                Err(Error::Corrupt { .. }) if open_fails => {}
                other => panic!(
                    "record {record} length {length}: {:?}",
                    other.map(|fs| fs.info())
                ),
            }
        }
    }
}

#[test]
fn looping_index_records_are_bounded() {
    // Point every subnode VCN of the directory's INDX records at VCN 0: the crate's own
    // iterator would descend forever; the reader lists each record once.
    let good = small_image();
    let mut img = good.clone();
    let mut patched = 0;
    for at in (0..img.len() - 4096).step_by(4096) {
        if &img[at..at + 4] == b"INDX" {
            img[at + 0x10..at + 0x18].copy_from_slice(&0u64.to_le_bytes());
            patched += 1;
        }
    }
    assert!(patched > 0);
    if let Ok(fs) = open_bytes(img) {
        porthole_fs::fuzzing::walk(fs.as_ref());
    }
}

#[test]
fn truncated_images_fail_cleanly() {
    let good = small_image();
    for len in [
        0,
        100,
        512,
        4096,
        0x4000,
        0x5000,
        0x10000,
        0x20000,
        0x100000,
        good.len() - 512,
    ] {
        let mut img = good.clone();
        img.truncate(len);
        if let Ok(fs) = open_bytes(img) {
            porthole_fs::fuzzing::walk(fs.as_ref());
        }
    }
}

use porthole_mutate::Rng;

/// The fuzz entry point over the small image and 3,000 mutations, mostly in the boot sector,
/// the first MFT records and the INDX records. Sector-end bytes (the fixup slots) are left
/// alone half the time, so mutations get past the update sequence check.
#[test]
fn mutated_images_never_panic() {
    let seed = small_image();
    let mft = mft_offset(&seed);
    let indx: Vec<usize> = (0..seed.len() - 4096)
        .step_by(4096)
        .filter(|&a| &seed[a..a + 4] == b"INDX")
        .collect();
    let mut hot = vec![0..512, mft..mft + 48 * 1024];
    hot.extend(indx.iter().map(|&a| a..a + 4096));
    porthole_fs::fuzzing::fuzz_filesystem(&seed);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..3000 {
        let mut img = seed.clone();
        for _ in 0..1 + rng.below(4) {
            let r = &hot[rng.below(hot.len())];
            let mut pos = r.start + rng.below(r.len());
            if round % 2 == 0 && pos % 512 >= 504 {
                pos -= 8;
            }
            let edge = [
                0u32,
                1,
                0x18,
                0x100,
                0xFFFF,
                0x8000_0000,
                u32::MAX,
                rng.next() as u32,
            ];
            let value = edge[rng.below(edge.len())];
            match rng.below(6) {
                0 => img[pos] ^= 1 << rng.below(8),
                1 => img[pos] = rng.next() as u8,
                2 => img[pos..pos + 2].copy_from_slice(&(value as u16).to_le_bytes()),
                3 => img[pos..pos + 4].copy_from_slice(&value.to_le_bytes()),
                4 => img[pos..pos + 8].copy_from_slice(&u64::from(value).to_le_bytes()),
                _ if rng.below(8) == 0 => img.truncate(pos.max(1)),
                _ => img[pos] = 0,
            }
            if pos + 8 >= img.len() {
                break;
            }
        }
        porthole_fs::fuzzing::fuzz_filesystem(&img);
    }
}

/// The checked-in fuzz seeds still open as NTFS.
#[test]
fn fuzz_seeds_open() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/ntfs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let fs = open_bytes(std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        assert_eq!(fs.info().kind, FsKind::Ntfs);
        porthole_fs::fuzzing::walk(fs.as_ref());
        seen += 1;
    }
    assert!(seen > 0, "no seeds in {}", dir.display());
}
