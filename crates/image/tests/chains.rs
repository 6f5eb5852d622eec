//! Backing chains: qcow2 over qcow2 and raw, extended-L2 and zero clusters in overlays,
//! VMDK delta links, and a crafted VHDX differencing image. Compared with qemu-img's view of
//! the whole chain where qemu reads it.

#![allow(clippy::unwrap_used)] // Tests: a panic is a failure report.

mod common;

use common::*;
use porthole_image::fuzzing::{seed_vhdx, seed_vhdx_byte, SEED_VHDX_SIZE};
use porthole_image::{open_image, open_image_as, BlockDevice, Format};

fn chains() -> std::path::PathBuf {
    image_dir("image-chains-v1", |dir| {
        let p = |n: &str| dir.join(n);
        let src = p("src.raw");
        qemu_img(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            s(&src),
            s(&p("base.qcow2")),
        ]);
        let overlay = |name: &str, backing: &str, fmt: &str, opts: &[&str], size: Option<&str>| {
            let mut args = vec!["create", "-f", "qcow2", "-b", backing, "-F", fmt];
            args.extend_from_slice(opts);
            let out = p(name);
            args.push(s(&out));
            args.extend(size);
            qemu_img(&args);
        };
        overlay("ov1.qcow2", "base.qcow2", "qcow2", &[], None);
        qemu_io("qcow2", &p("ov1.qcow2"), "write -P 0xab 1048000 70000");
        qemu_io("qcow2", &p("ov1.qcow2"), "write -z 0 65536");
        overlay(
            "ov2.qcow2",
            "ov1.qcow2",
            "qcow2",
            &["-o", "compat=0.10"],
            None,
        );
        qemu_io("qcow2", &p("ov2.qcow2"), "write -P 0xcd 5242880 4096");
        overlay("ov-raw.qcow2", "src.raw", "raw", &[], None);
        qemu_io("qcow2", &p("ov-raw.qcow2"), "write -P 0xab 100 1000");
        overlay("ov-big.qcow2", "base.qcow2", "qcow2", &[], Some("8M"));
        qemu_io("qcow2", &p("ov-big.qcow2"), "write -P 0xee 7340032 65536");
        overlay(
            "ov-extl2.qcow2",
            "base.qcow2",
            "qcow2",
            &["-o", "extended_l2=on"],
            None,
        );
        qemu_io("qcow2", &p("ov-extl2.qcow2"), "write -P 0xab 70000 5000");
        qemu_io("qcow2", &p("ov-extl2.qcow2"), "write -z 200704 4096");
        qemu_img(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            s(&src),
            s(&p("base.vmdk")),
        ]);
        qemu_img(&[
            "create",
            "-f",
            "vmdk",
            "-b",
            "base.vmdk",
            "-F",
            "vmdk",
            s(&p("delta.vmdk")),
        ]);
        qemu_io("vmdk", &p("delta.vmdk"), "write -P 0xab 3145000 100000");
    })
}

#[test]
fn qcow2_chains_match_qemu() {
    let dir = chains();
    for name in [
        "ov1.qcow2",
        "ov2.qcow2",
        "ov-raw.qcow2",
        "ov-big.qcow2",
        "ov-extl2.qcow2",
    ] {
        let path = dir.join(name);
        let dev = open_image(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_same_as_qemu(dev.as_ref(), &path, "qcow2");
    }
    let image = open_image_as(&dir.join("ov2.qcow2"), None).expect("open ov2");
    let names: Vec<_> = image
        .backing_chain
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["ov1.qcow2", "base.qcow2"]);
}

#[test]
fn vmdk_delta_link_matches_qemu() {
    let dir = chains();
    let path = dir.join("delta.vmdk");
    let image = open_image_as(&path, None).expect("open delta.vmdk");
    assert_eq!(image.format, Format::Vmdk);
    assert_eq!(image.backing_chain.len(), 1);
    assert_same_as_qemu(image.device.as_ref(), &path, "vmdk");
}

/// qemu does not read differencing VHDX, so the expected bytes follow from the crafted layout.
#[test]
fn vhdx_differencing_reads_parent_where_absent() {
    let dir = std::env::temp_dir().join(format!("porthole-vhdx-diff-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let parent_path = dir.join("parent.vhdx");
    std::fs::write(&parent_path, seed_vhdx(None)).unwrap();
    // The relative path is tried first; here it is right.
    std::fs::write(
        dir.join("child.vhdx"),
        seed_vhdx(Some((".\\parent.vhdx", "/nonexistent/p.vhdx"))),
    )
    .unwrap();
    // Here the relative path is wrong and the absolute one is used.
    let abs = s(&parent_path).to_string();
    std::fs::write(
        dir.join("sub/child.vhdx"),
        seed_vhdx(Some(("missing.vhdx", &abs))),
    )
    .unwrap();
    let mib = 1usize << 20;
    let parent = open_image(&parent_path).unwrap();
    let pbytes = read_all(parent.as_ref());
    for child in [dir.join("child.vhdx"), dir.join("sub/child.vhdx")] {
        let dev = open_image(&child).unwrap_or_else(|e| panic!("{}: {e}", child.display()));
        assert_eq!(dev.size(), SEED_VHDX_SIZE);
        let got = read_all(dev.as_ref());
        for i in 0..mib {
            let want = if (i / 512) % 2 == 1 {
                seed_vhdx_byte(2, i)
            } else {
                pbytes[i]
            };
            assert_eq!(got[i], want, "block 0 byte {i}");
        }
        assert!(
            (0..mib).all(|i| got[mib + i] == seed_vhdx_byte(3, i)),
            "block 1"
        );
        assert!(
            got[2 * mib..3 * mib] == pbytes[2 * mib..3 * mib],
            "block 2 from parent"
        );
        assert!(got[3 * mib..].iter().all(|&b| b == 0), "block 3 zero");
        // An unaligned read across the partial block's sector boundaries.
        let mut buf = vec![0u8; 5000];
        dev.read_exact_at(&mut buf, 1000).unwrap();
        assert_eq!(buf, got[1000..6000]);
    }
    // No parent at all: a clear error naming the missing file.
    std::fs::write(
        dir.join("orphan.vhdx"),
        seed_vhdx(Some(("gone.vhdx", "/nonexistent/gone.vhdx"))),
    )
    .unwrap();
    let err = open_image(&dir.join("orphan.vhdx"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("gone.vhdx"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn read_all(dev: &dyn BlockDevice) -> Vec<u8> {
    let mut buf = vec![0u8; dev.size() as usize];
    dev.read_exact_at(&mut buf, 0).unwrap();
    buf
}
