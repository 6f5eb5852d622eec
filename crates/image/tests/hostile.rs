//! Hostile images: truncations, table entries past the end of the file, absurd sizes,
//! backing loops and refused features. Each must give a clear error (format, structure,
//! offset) or zeros, never a panic, and opening must stay cheap.

#![allow(clippy::unwrap_used)] // Tests: a panic is a failure report.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::*;
use porthole_image::{open_image, BlockDevice, Error};

fn hostile_dir() -> PathBuf {
    image_dir("image-hostile-v1", |dir| {
        let p = |n: &str| dir.join(n);
        let src = p("src.raw");
        for (name, fmt, opts) in [
            ("v3.qcow2", "qcow2", "compat=1.1"),
            ("zlib.qcow2", "qcow2", "compat=1.1"),
            ("sparse.vmdk", "vmdk", "subformat=monolithicSparse"),
            ("stream.vmdk", "vmdk", "subformat=streamOptimized"),
            ("dynamic.vhdx", "vhdx", "subformat=dynamic"),
        ] {
            let out = p(name);
            let mut args = vec!["convert", "-f", "raw", "-O", fmt, "-o", opts];
            if name == "zlib.qcow2" {
                args.push("-c");
            }
            args.extend([s(&src), s(&out)]);
            qemu_img(&args);
        }
        qemu_img(&["create", "-f", "qcow2", s(&p("huge.qcow2")), "1P"]);
        qemu_img(&["create", "-f", "vhdx", s(&p("huge.vhdx")), "64T"]);
        qemu_img(&["create", "-f", "qcow2", s(&p("b.qcow2")), "1M"]);
        qemu_img(&[
            "create",
            "-f",
            "qcow2",
            "-b",
            "b.qcow2",
            "-F",
            "qcow2",
            s(&p("a.qcow2")),
        ]);
        qemu_img(&[
            "rebase",
            "-u",
            "-b",
            "a.qcow2",
            "-F",
            "qcow2",
            s(&p("b.qcow2")),
        ]);
        qemu_img(&["create", "-f", "qcow2", s(&p("self.qcow2")), "1M"]);
        qemu_img(&[
            "rebase",
            "-u",
            "-b",
            "self.qcow2",
            "-F",
            "qcow2",
            s(&p("self.qcow2")),
        ]);
        qemu_img(&["create", "-f", "qcow2", s(&p("deep0.qcow2")), "1M"]);
        for i in 1..40 {
            let (below, me) = (format!("deep{}.qcow2", i - 1), p(&format!("deep{i}.qcow2")));
            qemu_img(&["create", "-f", "qcow2", "-b", &below, "-F", "qcow2", s(&me)]);
        }
        let data_file = format!("data_file={}", s(&p("ext.raw")));
        qemu_img(&[
            "create",
            "-f",
            "qcow2",
            "-o",
            &data_file,
            s(&p("ext.qcow2")),
            "1M",
        ]);
        qemu_img(&[
            "create",
            "--object",
            "secret,id=sec0,data=porthole",
            "-f",
            "qcow2",
            "-o",
            "encrypt.format=luks,encrypt.key-secret=sec0",
            s(&p("enc.qcow2")),
            "1M",
        ]);
    })
}

/// A private copy of a cached image to damage.
fn copy(name: &str, tag: &str) -> PathBuf {
    let from = hostile_dir().join(name);
    let to = std::env::temp_dir().join(format!(
        "porthole-hostile-{}-{tag}-{name}",
        std::process::id()
    ));
    std::fs::copy(&from, &to).expect("copy image");
    to
}

fn patch(path: &Path, at: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for patch");
    f.write_all_at(bytes, at).expect("patch");
}

fn read_u64_be(path: &Path, at: u64) -> u64 {
    let mut b = [0u8; 8];
    std::fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut b, at)
        .unwrap();
    u64::from_be_bytes(b)
}

/// Opens and reads the whole device; returns the first error.
fn open_and_read_all(path: &Path) -> Result<(), Error> {
    let dev = open_image(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < dev.size() {
        let n = (dev.size() - at).min(buf.len() as u64) as usize;
        dev.read_exact_at(&mut buf[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

fn assert_corrupt(err: Error, format: &str, what: &str) {
    match &err {
        Error::Corrupt {
            format: f, what: w, ..
        } => {
            assert_eq!(*f, format, "{err}");
            assert!(w.contains(what), "{err}");
        }
        other => panic!("expected {format} corruption about {what:?}, got {other:?}"),
    }
}

#[test]
fn truncated_images_fail_clearly() {
    for name in [
        "v3.qcow2",
        "zlib.qcow2",
        "sparse.vmdk",
        "stream.vmdk",
        "dynamic.vhdx",
    ] {
        let full = std::fs::metadata(hostile_dir().join(name)).unwrap().len();
        let format = name.rsplit('.').next().unwrap();
        for len in [0, 50, 600, 70_000, 200_000, full / 2, full - 1000] {
            if len >= full {
                continue;
            }
            let path = copy(name, &format!("t{len}"));
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(len)
                .unwrap();
            let result = open_and_read_all(&path);
            std::fs::remove_file(&path).unwrap();
            // A file of length 0 or 50 is too short to be recognised, and reads as raw.
            if let Err(e) = result {
                let text = e.to_string();
                assert!(
                    text.contains(format) || text.contains("beyond the end"),
                    "{name} at {len}: {text}"
                );
            } else {
                assert!(
                    len <= 50 || len > full / 2, // near the end a cut may only lose a footer or padding
                    "{name} truncated to {len} read without error"
                );
            }
        }
    }
}

#[test]
fn table_entries_past_eof() {
    // qcow2 L1 entry -> an L2 table far past the end of the file.
    let path = copy("v3.qcow2", "l1");
    let l1 = read_u64_be(&path, 40);
    let l2 = read_u64_be(&path, l1) & 0x00ff_ffff_ffff_fe00;
    patch(&path, l1, &(1u64 << 40 | 1 << 63).to_be_bytes());
    let err = open_and_read_all(&path).unwrap_err();
    assert_corrupt(err, "qcow2", "L2 table");
    // qcow2 L2 entry -> a data cluster past the end.
    patch(&path, l1, &(l2 | 1 << 63).to_be_bytes());
    patch(&path, l2, &(1u64 << 40 | 1 << 63).to_be_bytes());
    let err = open_and_read_all(&path).unwrap_err();
    assert_corrupt(err, "qcow2", "data cluster");
    std::fs::remove_file(&path).unwrap();

    // VMDK grain table entry past the end.
    let path = copy("sparse.vmdk", "gt");
    let mut b = [0u8; 8];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact_at(&mut b, 56)
        .unwrap();
    let gd = u64::from_le_bytes(b) * 512;
    std::fs::File::open(&path)
        .unwrap()
        .read_exact_at(&mut b[..4], gd)
        .unwrap();
    let gt = u64::from(u32::from_le_bytes(b[..4].try_into().unwrap())) * 512;
    patch(&path, gt, &0x7fff_0000u32.to_le_bytes());
    assert_corrupt(
        open_and_read_all(&path).unwrap_err(),
        "vmdk",
        "data cluster",
    );
    std::fs::remove_file(&path).unwrap();

    // VHDX BAT entry past the end: find the BAT in the region table.
    let path = copy("dynamic.vhdx", "bat");
    let table = std::fs::read(&path).unwrap()[192 << 10..(192 << 10) + 4096].to_vec();
    let bat_guid = [0x66, 0x77, 0xC2, 0x2D, 0x23, 0xF6, 0x00, 0x42];
    let e = (0..8)
        .map(|i| 16 + i * 32)
        .find(|&e| table[e..e + 8] == bat_guid)
        .expect("BAT region");
    let bat = u64::from_le_bytes(table[e + 16..e + 24].try_into().unwrap());
    patch(&path, bat, &(6u64 | 1 << 40).to_le_bytes());
    assert_corrupt(
        open_and_read_all(&path).unwrap_err(),
        "vhdx",
        "data cluster",
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn absurd_sizes_open_cheaply() {
    let dir = hostile_dir();
    for (name, size) in [("huge.qcow2", 1u64 << 50), ("huge.vhdx", 64u64 << 40)] {
        let start = Instant::now();
        let dev = open_image(&dir.join(name)).unwrap();
        assert_eq!(dev.size(), size);
        let mut buf = vec![0xffu8; 100_000];
        for at in [0, size / 2 + 12345, size - 100_000] {
            dev.read_exact_at(&mut buf, at).unwrap();
            assert!(buf.iter().all(|&b| b == 0), "{name} at {at}");
        }
        assert!(
            start.elapsed().as_secs() < 5,
            "{name} took {:?}",
            start.elapsed()
        );
    }
    // A header claiming 1 PiB over a tiny L1 table is corrupt, found at open.
    let path = copy("v3.qcow2", "size");
    patch(&path, 24, &(1u64 << 50).to_be_bytes());
    assert_corrupt(open_image(&path).unwrap_err(), "qcow2", "l1_size");
    std::fs::remove_file(&path).unwrap();
    // A VMDK claiming 1 PiB: its grain directory would lie past the end of the file.
    let path = copy("sparse.vmdk", "size");
    patch(&path, 12, &(1u64 << 41).to_le_bytes());
    assert_corrupt(open_image(&path).unwrap_err(), "vmdk", "grain directory");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn backing_loops_and_depth() {
    let dir = hostile_dir();
    for name in ["a.qcow2", "b.qcow2", "self.qcow2"] {
        match open_image(&dir.join(name)) {
            Err(Error::BackingLoop { path }) => {
                assert!(path.ends_with(name) || path.extension().is_some())
            }
            other => panic!("{name}: expected a backing loop, got {other:?}"),
        }
    }
    assert!(open_image(&dir.join("deep20.qcow2")).is_ok());
    match open_image(&dir.join("deep39.qcow2")) {
        Err(Error::ChainTooDeep { limit, .. }) => assert_eq!(limit, porthole_image::MAX_CHAIN),
        other => panic!("expected a too deep chain, got {other:?}"),
    }
}

#[test]
fn refused_features_say_what() {
    let dir = hostile_dir();
    for (name, what) in [
        ("ext.qcow2", "external data file"),
        ("enc.qcow2", "encrypted"),
    ] {
        match open_image(&dir.join(name)) {
            Err(Error::Unsupported {
                format: "qcow2",
                what: w,
            }) => assert!(w.contains(what), "{w}"),
            other => panic!("{name}: expected unsupported {what}, got {other:?}"),
        }
    }
    // A VHDX whose log is not empty: set the log GUID in both headers, fix their CRCs.
    let path = copy("dynamic.vhdx", "log");
    let mut bytes = std::fs::read(&path).unwrap();
    for at in [64usize << 10, 128 << 10] {
        bytes[at + 48..at + 64].fill(0x42);
    }
    porthole_image::fuzzing::fix_vhdx_checksums(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
    match open_image(&path) {
        Err(Error::Unsupported {
            format: "vhdx",
            what,
        }) => assert!(what.contains("log"), "{what}"),
        other => panic!("expected the log to be refused, got {other:?}"),
    }
    std::fs::remove_file(&path).unwrap();
}
