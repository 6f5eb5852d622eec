//! Every format and subformat qemu-img writes, read by porthole and compared byte for byte
//! with qemu-img's own raw conversion.

#![allow(clippy::unwrap_used)] // Tests: a panic is a failure report.

mod common;

use std::path::Path;

use common::*;
use porthole_image::{open_image, open_image_as, Format};

/// (file, qemu format, `qemu-img convert` options)
const CONVERSIONS: &[(&str, &str, &[&str])] = &[
    ("v2.qcow2", "qcow2", &["-o", "compat=0.10"]),
    ("v3.qcow2", "qcow2", &["-o", "compat=1.1"]),
    ("c512.qcow2", "qcow2", &["-o", "cluster_size=512"]),
    ("c2m.qcow2", "qcow2", &["-o", "cluster_size=2M"]),
    ("zlib.qcow2", "qcow2", &["-c"]),
    (
        "zstd.qcow2",
        "qcow2",
        &["-c", "-o", "compression_type=zstd"],
    ),
    (
        "zlib-v2.qcow2",
        "qcow2",
        &["-c", "-o", "compat=0.10,cluster_size=4096"],
    ),
    ("extl2.qcow2", "qcow2", &["-o", "extended_l2=on"]),
    ("sparse.vmdk", "vmdk", &["-o", "subformat=monolithicSparse"]),
    ("stream.vmdk", "vmdk", &["-o", "subformat=streamOptimized"]),
    ("flat.vmdk", "vmdk", &["-o", "subformat=monolithicFlat"]),
    (
        "tgs.vmdk",
        "vmdk",
        &["-o", "subformat=twoGbMaxExtentSparse"],
    ),
    ("tgf.vmdk", "vmdk", &["-o", "subformat=twoGbMaxExtentFlat"]),
    ("dynamic.vhdx", "vhdx", &["-o", "subformat=dynamic"]),
    ("fixed.vhdx", "vhdx", &["-o", "subformat=fixed"]),
    (
        "small-blocks.vhdx",
        "vhdx",
        &["-o", "subformat=dynamic,block_size=1M"],
    ),
];

fn converted() -> std::path::PathBuf {
    image_dir("image-formats-v4", |dir| {
        let src = dir.join("src.raw");
        for (name, format, opts) in CONVERSIONS {
            let out = dir.join(name);
            let mut args = vec!["convert", "-f", "raw", "-O", format];
            args.extend_from_slice(opts);
            args.extend_from_slice(&[s(&src), s(&out)]);
            qemu_img(&args);
        }
        // A hand-written descriptor over several extents of different kinds, with relative
        // names: the sparse extent of tgs.vmdk, a zero extent, a window of flat.vmdk's data.
        let desc = format!(
            "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
createType=\"twoGbMaxExtentSparse\"\n\nRW {} SPARSE \"tgs-s001.vmdk\"\nRW 2048 ZERO\nRW 4096 FLAT \"flat-flat.vmdk\" 1000\n\n\
ddb.adapterType = \"ide\"\n",
            DISK / 512
        );
        std::fs::write(dir.join("multi.vmdk"), desc).expect("write descriptor");
    })
}

fn check(name: &str, format: &str, expect: Format) {
    let dir = converted();
    let path = dir.join(name);
    let image = open_image_as(&path, None).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(image.format, expect, "{name}: detected format");
    assert_same_as_qemu(image.device.as_ref(), &path, format);
}

#[test]
fn qcow2_v2_and_v3() {
    for name in [
        "v2.qcow2",
        "v3.qcow2",
        "c512.qcow2",
        "c2m.qcow2",
        "extl2.qcow2",
    ] {
        check(name, "qcow2", Format::Qcow2);
    }
}

#[test]
fn qcow2_compressed_zlib_and_zstd() {
    let dir = converted();
    for name in ["zlib.qcow2", "zstd.qcow2", "zlib-v2.qcow2"] {
        // `qemu-img check` counts compressed clusters in every qemu version (`map` reports
        // them only from qemu 8 on), so the test cannot pass on an image qemu left plain.
        let report = qemu_img(&["check", "--output=json", s(&dir.join(name))]);
        let compressed = serde_json::from_str::<serde_json::Value>(&report)
            .ok()
            .and_then(|v| v["compressed-clusters"].as_u64())
            .unwrap_or(0);
        assert!(compressed > 0, "{name} has no compressed cluster: {report}");
        check(name, "qcow2", Format::Qcow2);
    }
}

#[test]
fn vmdk_subformats() {
    for name in [
        "sparse.vmdk",
        "stream.vmdk",
        "flat.vmdk",
        "tgs.vmdk",
        "tgf.vmdk",
    ] {
        check(name, "vmdk", Format::Vmdk);
    }
}

/// A hand-written descriptor of sparse, zero and flat extents. (qemu miscounts the size of
/// such descriptors, so the expected bytes are built from qemu's conversion of the parts.)
#[test]
fn vmdk_multi_extent_descriptor() {
    let dir = converted();
    let raw = |name: &str| {
        let out = dir.join(format!("{name}.part.raw"));
        qemu_img(&[
            "convert",
            "-f",
            "vmdk",
            "-O",
            "raw",
            s(&dir.join(name)),
            s(&out),
        ]);
        let bytes = std::fs::read(&out).expect("read part");
        std::fs::remove_file(&out).expect("remove part");
        bytes
    };
    let mut want = raw("tgs.vmdk");
    want.extend(std::iter::repeat_n(0u8, 2048 * 512));
    want.extend_from_slice(&raw("flat.vmdk")[1000 * 512..5096 * 512]);
    let dev = open_image(&dir.join("multi.vmdk")).expect("open multi.vmdk");
    assert_eq!(dev.size(), want.len() as u64);
    let mut got = vec![0u8; want.len()];
    dev.read_exact_at(&mut got, 0).expect("read all");
    assert!(got == want, "multi.vmdk differs");
    let mut rng = Rng(7);
    for _ in 0..200 {
        let len = (rng.next() % 300_000) as usize;
        let at = (rng.next() % (want.len() - len) as u64) as usize;
        let mut b = vec![0u8; len];
        dev.read_exact_at(&mut b, at as u64).expect("read");
        assert!(b == want[at..at + len], "{len} bytes at {at:#x} differ");
    }
}

#[test]
fn vhdx_dynamic_and_fixed() {
    for name in ["dynamic.vhdx", "fixed.vhdx", "small-blocks.vhdx"] {
        check(name, "vhdx", Format::Vhdx);
    }
}

#[test]
fn raw_and_forced_format() {
    let dir = converted();
    check("src.raw", "raw", Format::Raw);
    // Forcing raw on a qcow2 file shows the container bytes.
    let forced = open_image_as(&dir.join("v3.qcow2"), Some(Format::Raw)).expect("open as raw");
    let mut magic = [0u8; 4];
    forced.device.read_exact_at(&mut magic, 0).expect("read");
    assert_eq!(&magic, b"QFI\xfb");
    let dev = open_image(Path::new(&dir.join("v3.qcow2"))).expect("open");
    assert_eq!(dev.size(), DISK);
}
