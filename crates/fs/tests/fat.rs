//! FAT12/16/32 images built with mkfs.vfat and filled with mtools (no mount), read back through
//! `porthole_fs::open` and compared with the reference tree; label and id against blkid; crafted
//! damage (absurd BPB fields, a looping chain, truncation) must give errors, not panics.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use porthole_fs::{Error, FileType, Filesystem, FsKind};
use porthole_testkit::{
    assert_same_tree, blkid_label_uuid, build_reference_tree, cached, dd_write, mem, open, run,
    truncate, Fidelity,
};

/// A FAT image of `fat` bits, `mib` MiB, labelled `label`, holding the reference tree and an
/// EFI loader path in lower case.
///
/// Only the FAT32 image keeps the 2,000-entry directory: mcopy's short-name mangling
/// (`ENTRY-~1`, `~2`, ...) rescans the directory for every candidate, which costs minutes of
/// CPU per image at that size.
fn image(fat: u32, mib: u64, label: &str) -> (PathBuf, PathBuf) {
    let big_dir = fat == 32;
    let recipe = if big_dir {
        format!("fat{fat}-{mib}M-{label}-v1")
    } else {
        format!("fat{fat}-{mib}M-{label}-v2-no-big-dir")
    };
    let paths = cached(&recipe, &["img", "tree"], |p| {
        let (img, tree) = (&p[0], &p[1]);
        build_reference_tree(tree, Fidelity::FAT);
        if !big_dir {
            std::fs::remove_dir_all(tree.join("big-dir")).unwrap();
        }
        std::fs::create_dir_all(tree.join("efi/boot")).unwrap();
        std::fs::write(tree.join("efi/boot/bootx64.efi"), b"MZ loader").unwrap();
        truncate(img, mib << 20);
        let mut args = vec!["-F".to_string(), fat.to_string(), "-n".into(), label.into()];
        if fat == 32 {
            args.extend(["-s".into(), "1".into()]); // small clusters so 96 MiB is FAT32
        }
        args.push(img.display().to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run("mkfs.vfat", "dosfstools", &args, None);
        mcopy_tree(img, tree);
    });
    (paths[0].clone(), paths[1].clone())
}

/// `mcopy -s -m -i IMG TREE/* ::`, the glob expanded here; TZ=UTC so mtimes are UTC.
fn mcopy_tree(img: &Path, tree: &Path) {
    let mut args = vec![
        "TZ=UTC".to_string(),
        "MTOOLS_SKIP_CHECK=1".into(),
        "mcopy".into(),
        "-s".into(),
        "-m".into(),
        "-i".into(),
        img.display().to_string(),
    ];
    for entry in std::fs::read_dir(tree).unwrap() {
        args.push(entry.unwrap().path().display().to_string());
    }
    args.push("::".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("env", "mtools", &args, None);
}

fn check_image(fat: u32, mib: u64, label: &str, kind: FsKind) {
    let (img, tree) = image(fat, mib, label);
    let fs = porthole_fs::open(open(&img)).unwrap();
    let info = fs.info();
    assert_eq!(info.kind, kind);
    let (blk_label, blk_uuid) = blkid_label_uuid(&img);
    assert_eq!(info.label, blk_label);
    assert_eq!(info.uuid, blk_uuid);
    assert_eq!(info.label.as_deref(), Some(label));
    assert_same_tree(fs.as_ref(), b"/", &tree, Fidelity::FAT);
}

#[test]
fn fat12_holds_the_reference_tree() {
    check_image(12, 24, "ESP12", FsKind::Fat12);
}

#[test]
fn fat16_holds_the_reference_tree() {
    check_image(16, 48, "ESP16", FsKind::Fat16);
}

#[test]
fn fat32_holds_the_reference_tree() {
    check_image(32, 96, "EFI SYSTEM", FsKind::Fat32);
}

#[test]
fn lookup_ignores_case_and_reports_vfat_metadata() {
    let (img, tree) = image(32, 96, "EFI SYSTEM");
    let fs = porthole_fs::open(open(&img)).unwrap();
    for path in [
        "/EFI/BOOT/BOOTX64.EFI",
        "/efi/Boot/bootx64.EFI",
        "/efi/boot/bootx64.efi",
    ] {
        assert_eq!(
            fs.read_file(path.as_bytes(), 1 << 20).unwrap(),
            b"MZ loader",
            "{path}"
        );
    }
    // The listing keeps the name as written.
    let names: Vec<_> = fs
        .read_dir(b"/EFI/BOOT")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, [b"bootx64.efi".to_vec()]);
    let unicode = "/NAMES/\u{dc}N\u{cf}C\u{d8}D\u{c9}-\u{540d}\u{524d}";
    assert_eq!(
        fs.read_file(unicode.as_bytes(), 64).unwrap(),
        b"unicode name\n"
    );

    let dir = fs.metadata(b"/efi").unwrap();
    assert_eq!(
        (dir.file_type, dir.mode, dir.uid, dir.gid),
        (FileType::Directory, 0o755, 0, 0)
    );
    let file = fs.metadata(b"/etc/hostname").unwrap();
    assert_eq!(
        (file.file_type, file.mode, file.size),
        (FileType::Regular, 0o755, 14)
    );
    let host = std::fs::metadata(tree.join("etc/hostname")).unwrap();
    let want = std::os::unix::fs::MetadataExt::mtime(&host);
    // FAT keeps even seconds.
    assert_eq!(file.mtime, Some(want - want % 2));
    assert!(matches!(
        fs.metadata(b"/etc/nothing"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        fs.read_dir(b"/etc/hostname"),
        Err(Error::NotADirectory { .. })
    ));
    assert!(matches!(
        fs.read_link(b"/etc/hostname"),
        Err(Error::NotASymlink { .. })
    ));
    assert!(matches!(
        fs.read_file(b"/etc", 10),
        Err(Error::IsADirectory { .. })
    ));
}

#[test]
fn read_only_attribute_clears_write_bits() {
    let (src, _) = image(16, 48, "ESP16");
    let img = src.with_extension("ro");
    std::fs::copy(&src, &img).unwrap();
    run(
        "env",
        "mtools",
        &[
            "MTOOLS_SKIP_CHECK=1",
            "mattrib",
            "-i",
            &img.display().to_string(),
            "+r",
            "::/etc/fstab",
        ],
        None,
    );
    let fs = porthole_fs::open(open(&img)).unwrap();
    assert_eq!(fs.metadata(b"/etc/fstab").unwrap().mode, 0o555);
    std::fs::remove_file(&img).unwrap();
}

/// A small FAT12 image (bytes in memory) with one multi-cluster file, for the damage tests.
fn small_image() -> Vec<u8> {
    let paths = cached("fat12-small-v2", &["img"], |p| {
        truncate(&p[0], 128 << 10);
        run(
            "mkfs.vfat",
            "dosfstools",
            &[
                "-F",
                "12",
                "-s",
                "1",
                "-n",
                "SMALL",
                &p[0].display().to_string(),
            ],
            None,
        );
        let src = p[0].with_extension("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(
            src.join("file.bin"),
            porthole_testkit::pattern("small", 3000),
        )
        .unwrap();
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/inner.txt"), b"inner\n").unwrap();
        std::fs::write(src.join("sub/A long name \u{e9}.txt"), b"long\n").unwrap();
        mcopy_tree(&p[0], &src);
        std::fs::remove_dir_all(&src).unwrap();
    });
    std::fs::read(&paths[0]).unwrap()
}

fn open_bytes(bytes: Vec<u8>) -> porthole_fs::Result<Box<dyn Filesystem>> {
    porthole_fs::open(mem(bytes))
}

#[test]
fn absurd_bpb_fields_are_corrupt() {
    let good = small_image();
    assert!(open_bytes(good.clone()).is_ok());
    // (offset, bytes): bytes per sector 0 and 1000, sectors per cluster 0 and 3, FAT count 0,
    // reserved sectors 0, FAT size 0, total sectors 0.
    let cases: [(usize, &[u8]); 8] = [
        (11, &[0, 0]),
        (11, &[0xE8, 0x03]),
        (13, &[0]),
        (13, &[3]),
        (16, &[0]),
        (14, &[0, 0]),
        (22, &[0, 0]),
        (19, &[0, 0]),
    ];
    for (at, bytes) in cases {
        let mut img = good.clone();
        img[at..at + bytes.len()].copy_from_slice(bytes);
        match open_bytes(img) {
            Err(Error::Corrupt { fs: "vfat", .. }) => {}
            other => panic!("field at {at} = {bytes:?}: {other:?}"),
        }
    }
}

/// Byte offset of FAT12 entry `cluster`'s pair of bytes, and whether it is the high nibble.
fn fat12_entry(img: &[u8], cluster: usize) -> (usize, bool) {
    let reserved = usize::from(u16::from_le_bytes([img[14], img[15]]));
    (reserved * 512 + cluster + cluster / 2, cluster % 2 == 1)
}

fn set_fat12(img: &mut [u8], cluster: usize, value: u16) {
    let (at, odd) = fat12_entry(img, cluster);
    let old = u16::from_le_bytes([img[at], img[at + 1]]);
    let new = if odd {
        (old & 0x000F) | (value << 4)
    } else {
        (old & 0xF000) | (value & 0xFFF)
    };
    img[at..at + 2].copy_from_slice(&new.to_le_bytes());
}

/// The first cluster of `name` in the root directory of the small image.
fn first_cluster(fs: &dyn Filesystem, name: &[u8], img: &[u8]) -> usize {
    let ino = fs.metadata(name).unwrap().ino as usize;
    usize::from(u16::from_le_bytes([img[ino + 26], img[ino + 27]]))
}

#[test]
fn looping_chains_are_reported() {
    let good = small_image();
    let fs = open_bytes(good.clone()).unwrap();
    let file = first_cluster(fs.as_ref(), b"/FILE.BIN", &good);
    let sub = first_cluster(fs.as_ref(), b"/sub", &good);
    // The file's second cluster points back at its first.
    let mut img = good.clone();
    set_fat12(&mut img, file + 1, file as u16);
    let fs = open_bytes(img).unwrap();
    let err = fs.read_file(b"/file.bin", 1 << 20).unwrap_err();
    assert!(err.to_string().contains("loops"), "{err}");
    // A directory cluster that points at itself.
    let mut img = good.clone();
    set_fat12(&mut img, sub, sub as u16);
    let mut dir = vec![0u8; 512];
    dir.fill(0x20); // no end-of-directory marker, so the walk follows the chain
    let data = data_offset(&img) + (sub - 2) * 512;
    img[data..data + 512].copy_from_slice(&dir);
    let fs = open_bytes(img).unwrap();
    let err = fs.read_dir(b"/sub").unwrap_err();
    assert!(err.to_string().contains("loops"), "{err}");
    // A chain into a free cluster.
    let mut img = good;
    set_fat12(&mut img, file, 0);
    let fs = open_bytes(img).unwrap();
    assert!(matches!(
        fs.read_file(b"/file.bin", 1 << 20),
        Err(Error::Corrupt { .. })
    ));
}

fn data_offset(img: &[u8]) -> usize {
    let reserved = usize::from(u16::from_le_bytes([img[14], img[15]]));
    let fats = usize::from(img[16]);
    let fat_size = usize::from(u16::from_le_bytes([img[22], img[23]]));
    let root = usize::from(u16::from_le_bytes([img[17], img[18]])) * 32;
    (reserved + fats * fat_size) * 512 + root.div_ceil(512) * 512
}

#[test]
fn truncated_images_fail_cleanly() {
    let good = small_image();
    for len in [0, 100, 511, 512, 1024, 4096, 8192, 16384, 65536, 100_000] {
        let mut img = good.clone();
        img.truncate(len);
        if let Ok(fs) = open_bytes(img) {
            porthole_fs::fuzzing::walk(fs.as_ref());
        }
    }
}

#[test]
fn damaged_image_on_disk_is_reported_with_offset() {
    // The same through a file-backed device, written with dd as a person would.
    let good = small_image();
    let img = porthole_testkit::image_dir().join("fat12-damaged.img");
    std::fs::write(&img, &good).unwrap();
    dd_write(&img, 16, &[0]);
    let err = porthole_fs::open(open(&img)).unwrap_err();
    assert!(err.to_string().contains("offset 0x10"), "{err}");
    std::fs::remove_file(&img).unwrap();
}

use porthole_mutate::Rng;

/// Runs the fuzz entry point over the small image and 3,000 mutations of it: bit flips, edge
/// values in 16/32-bit fields and truncations, mostly in the boot sector, the FAT and the
/// directories, where they reach the parser.
#[test]
fn mutated_images_never_panic() {
    let seed = small_image();
    let data_at = data_offset(&seed);
    let hot = [0..512, 512..data_at, data_at..data_at + 4096];
    porthole_fs::fuzzing::fuzz_filesystem(&seed);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let mut img = seed.clone();
        for _ in 0..1 + rng.below(4) {
            let pos = if rng.below(4) > 0 {
                let r = &hot[rng.below(hot.len())];
                r.start + rng.below(r.len())
            } else {
                rng.below(img.len())
            };
            let edge = [
                0u32,
                1,
                0xFF7,
                0xFFF,
                0xFFFF,
                0x0FFF_FFFF,
                u32::MAX,
                rng.next() as u32,
            ];
            let value = edge[rng.below(edge.len())];
            match rng.below(5) {
                0 => img[pos] ^= 1 << rng.below(8),
                1 => img[pos] = rng.next() as u8,
                2 if pos + 2 <= img.len() => {
                    img[pos..pos + 2].copy_from_slice(&(value as u16).to_le_bytes())
                }
                3 if pos + 4 <= img.len() => {
                    img[pos..pos + 4].copy_from_slice(&value.to_le_bytes())
                }
                _ => img.truncate(pos.max(1)),
            }
            if pos >= img.len() {
                break;
            }
        }
        porthole_fs::fuzzing::fuzz_filesystem(&img);
    }
}

/// The checked-in fuzz seeds still open as FAT (they go stale if the reader changes its probe).
#[test]
fn fuzz_seeds_open() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/fat");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let fs = open_bytes(bytes).unwrap();
        assert_eq!(fs.info().kind, FsKind::Fat12);
        porthole_fs::fuzzing::walk(fs.as_ref());
        seen += 1;
    }
    assert!(seen > 0, "no seeds in {}", dir.display());
}
