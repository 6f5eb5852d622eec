//! LVM2 structures crafted to spec (label, PV header, metadata area, text metadata): the ring
//! buffer wrap, and hostile variants that must give clear errors.
#![allow(clippy::unwrap_used)] // Tests: a panic is a failure report.

use std::sync::Arc;

use porthole_image::BlockDevice;
use porthole_image::MemDevice;
use porthole_volume::fuzzing::{fix_pv_crcs, seed_metadata, seed_pv};
use porthole_volume::lvm::{self, VolumeGroup};
use porthole_volume::{Dev, Error};

fn dev(bytes: Vec<u8>) -> Dev {
    Arc::new(MemDevice(bytes))
}

fn vg_of(text: &str, wrap: bool) -> Result<VolumeGroup, Error> {
    let groups = lvm::assemble(&[dev(seed_pv(text.as_bytes(), wrap))])?;
    Ok(groups.into_iter().next().unwrap())
}

/// What lv0 of the seed metadata holds at LV offset `o`: extents 0-1 are PV extents 4-5; the
/// next four are striped in 1 KiB chunks over PV extents 8-9 and 12-13 (4 KiB extents from
/// 64 KiB); the seed fills PV byte i with (i / 4096) ^ i.
fn expected_lv0(o: u64) -> u8 {
    let dev_off = if o < 8192 {
        65536 + 4 * 4096 + o
    } else {
        let rel = o - 8192;
        let k = rel / 1024;
        let first = if k.is_multiple_of(2) { 8 } else { 12 };
        65536 + first * 4096 + (k / 2) * 1024 + rel % 1024
    };
    (dev_off / 4096) as u8 ^ dev_off as u8
}

#[test]
fn metadata_wrapping_around_the_ring_buffer_is_read() {
    for wrap in [false, true] {
        let vg = vg_of(&seed_metadata(), wrap).unwrap();
        assert_eq!(
            (vg.name.as_str(), vg.seqno, vg.extent_bytes),
            ("vg", 3, 4096)
        );
        let lv = vg.logical_volume("lv0").unwrap();
        let mut buf = vec![0u8; lv.size() as usize];
        lv.read_exact_at(&mut buf, 0).unwrap();
        let expected: Vec<u8> = (0..buf.len() as u64).map(expected_lv0).collect();
        assert!(buf == expected, "wrap={wrap}");
    }
}

#[test]
fn metadata_larger_than_its_area_is_an_error() {
    let mut pv = seed_pv(seed_metadata().as_bytes(), false);
    pv[4096 + 48..4096 + 56].copy_from_slice(&(70_000u64).to_le_bytes());
    fix_pv_crcs(&mut pv);
    let err = lvm::probe(&dev(pv)).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
}

#[test]
fn metadata_size_of_a_terabyte_is_a_limit_not_an_allocation() {
    let mut pv = seed_pv(seed_metadata().as_bytes(), false);
    pv[4096 + 48..4096 + 56].copy_from_slice(&(1u64 << 40).to_le_bytes());
    fix_pv_crcs(&mut pv);
    let err = lvm::probe(&dev(pv)).unwrap_err();
    assert!(matches!(err, Error::Limit { .. }), "{err}");
}

#[test]
fn truncated_metadata_text_is_a_parse_error() {
    let text = seed_metadata();
    let cut = &text[..text.len() * 2 / 3];
    let err = vg_of(cut, false).unwrap_err();
    assert!(matches!(err, Error::Metadata { .. }), "{err}");
}

#[test]
fn damaged_metadata_checksum_is_an_error() {
    let mut pv = seed_pv(seed_metadata().as_bytes(), false);
    pv[4096 + 600] ^= 1;
    let err = lvm::probe(&dev(pv)).unwrap_err();
    assert!(err.to_string().contains("metadata CRC"), "{err}");
}

#[test]
fn damaged_label_checksum_is_an_error() {
    let mut pv = seed_pv(seed_metadata().as_bytes(), false);
    pv[512 + 40] ^= 1; // inside the device size field
    let err = lvm::probe(&dev(pv)).unwrap_err();
    assert!(err.to_string().contains("label CRC"), "{err}");
}

#[test]
fn too_deep_nesting_is_refused() {
    let deep = format!(
        "vg {{ seqno = 1 {} }}",
        "x { ".repeat(5000) + &"} ".repeat(5000)
    );
    let err = vg_of(&deep, false).unwrap_err();
    assert!(err.to_string().contains("nesting deeper"), "{err}");
    let deep_list = format!("vg {{ seqno = 1 l = {} }}", "[".repeat(5000));
    let err = vg_of(&deep_list, false).unwrap_err();
    assert!(err.to_string().contains("nesting deeper"), "{err}");
}

#[test]
fn segments_outside_their_pv_or_on_unknown_pvs_are_errors() {
    let text = seed_metadata().replace("\"pv0\", 4\n", "\"pv0\", 15\n");
    let err = vg_of(&text, false)
        .unwrap()
        .logical_volume("lv0")
        .unwrap_err();
    assert!(err.to_string().contains("beyond PV pv0"), "{err}");
    let text = seed_metadata().replace("\"pv0\", 4\n", "\"pv9\", 4\n");
    let err = vg_of(&text, false)
        .unwrap()
        .logical_volume("lv0")
        .unwrap_err();
    assert!(err.to_string().contains("unknown PV pv9"), "{err}");
    let text = seed_metadata().replace("start_extent = 2", "start_extent = 3");
    let err = vg_of(&text, false)
        .unwrap()
        .logical_volume("lv0")
        .unwrap_err();
    assert!(err.to_string().contains("gap"), "{err}");
}

#[test]
fn unsupported_segment_types_are_named() {
    let text = seed_metadata().replacen("type = \"striped\"", "type = \"thin\"", 1);
    let err = vg_of(&text, false)
        .unwrap()
        .logical_volume("lv0")
        .unwrap_err();
    assert!(
        matches!(&err, Error::Unsupported { what, .. } if what.contains("\"thin\"")),
        "{err}"
    );
}
