//! The fuzz entry points over seeds (tiny qemu-img images, a crafted VHDX) and thousands of
//! deterministic mutations each, so CI exercises the parsers on hostile input on every run.

#![allow(clippy::unwrap_used, clippy::single_range_in_vec_init)] // Tests: a panic is a failure report.

use std::ops::Range;
use std::sync::Arc;

use porthole_image::fuzzing::{self, fix_vhdx_checksums, seed_vhdx};
use porthole_image::{open_device, BlockDevice, Format, MemDevice};

const SRC: &[u8] = include_bytes!("../fuzz/seeds/src.raw");
const SEEDS: &[(&str, &[u8], Format)] = &[
    (
        "q3.qcow2",
        include_bytes!("../fuzz/seeds/q3.qcow2"),
        Format::Qcow2,
    ),
    (
        "q2z.qcow2",
        include_bytes!("../fuzz/seeds/q2z.qcow2"),
        Format::Qcow2,
    ),
    (
        "qzstd.qcow2",
        include_bytes!("../fuzz/seeds/qzstd.qcow2"),
        Format::Qcow2,
    ),
    (
        "qext.qcow2",
        include_bytes!("../fuzz/seeds/qext.qcow2"),
        Format::Qcow2,
    ),
    (
        "sparse.vmdk",
        include_bytes!("../fuzz/seeds/sparse.vmdk"),
        Format::Vmdk,
    ),
    (
        "stream.vmdk",
        include_bytes!("../fuzz/seeds/stream.vmdk"),
        Format::Vmdk,
    ),
];

fn read_all(dev: &dyn BlockDevice) -> Vec<u8> {
    let mut buf = vec![0u8; dev.size() as usize];
    dev.read_exact_at(&mut buf, 0).expect("read seed image");
    buf
}

#[test]
fn seeds_read_back_their_source() {
    for (name, bytes, format) in SEEDS {
        let image = open_device(Arc::new(MemDevice(bytes.to_vec())), None).expect(name);
        assert_eq!(image.format, *format, "{name}");
        assert!(
            read_all(image.device.as_ref()) == SRC,
            "{name} differs from src.raw"
        );
    }
    let vhdx = open_device(Arc::new(MemDevice(seed_vhdx(None))), None).expect("seed vhdx");
    assert_eq!(vhdx.format, Format::Vhdx);
    let all = read_all(vhdx.device.as_ref());
    let mib = 1 << 20;
    assert!((0..mib).all(|i| all[i] == fuzzing::seed_vhdx_byte(1, i)));
    assert!(all[mib..].iter().all(|&b| b == 0));
}

use porthole_mutate::Rng;

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// One mutation: a bit flip, a byte, a 4/8-byte field (either endianness) set to an edge
/// value, or a truncation; positions favour `hot` (where the structures are).
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, hot: &[Range<usize>]) {
    let pos = if rng.below(4) > 0 && !hot.is_empty() {
        let r = &hot[rng.below(hot.len())];
        r.start + rng.below(r.len())
    } else {
        rng.below(data.len())
    };
    let edge: [u64; 7] = [
        0,
        1,
        u64::MAX,
        u64::from(u32::MAX),
        1 << 32,
        1 << 50,
        rng.next(),
    ];
    let e = edge[rng.below(edge.len())];
    match rng.below(7) {
        0 => {
            if let Some(b) = data.get_mut(pos) {
                *b ^= 1 << rng.below(8);
            }
        }
        1 => put(data, pos, &[rng.next() as u8]),
        2 => put(data, pos & !3, &(e as u32).to_le_bytes()),
        3 => put(data, pos & !3, &(e as u32).to_be_bytes()),
        4 => put(data, pos & !7, &e.to_le_bytes()),
        5 => put(data, pos & !7, &e.to_be_bytes()),
        _ => data.truncate(pos),
    }
}

fn run(seed: &[u8], rounds: usize, hot: &[Range<usize>], fix: fn(&mut [u8]), entry: fn(&[u8])) {
    entry(seed);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed.len() as u64);
    for i in 0..rounds {
        let mut data = seed.to_vec();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut data, hot);
        }
        if i % 2 == 0 {
            fix(&mut data);
        }
        entry(&data);
    }
}

fn seed(name: &str) -> &'static [u8] {
    SEEDS
        .iter()
        .find(|s| s.0 == name)
        .map(|s| s.1)
        .expect("seed")
}

#[test]
fn mutated_qcow2_never_panics() {
    for name in ["q3.qcow2", "q2z.qcow2", "qzstd.qcow2", "qext.qcow2"] {
        let s = seed(name);
        let hot = [
            0..512,
            512..s.len().min(8192),
            s.len().saturating_sub(4096)..s.len(),
        ];
        run(s, 2500, &hot, |_| {}, fuzzing::fuzz_qcow2);
    }
    run(seed("q3.qcow2"), 300, &[0..512], |_| {}, fuzzing::fuzz_open);
}

#[test]
fn mutated_vmdk_never_panics() {
    for name in ["sparse.vmdk", "stream.vmdk"] {
        let s = seed(name);
        let hot = [0..512, 512..2048, 2048..0x10000, s.len() - 2048..s.len()];
        run(s, 1500, &hot, |_| {}, fuzzing::fuzz_vmdk);
    }
    let desc = b"# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType=\"twoGbMaxExtentSparse\"\nRW 100 SPARSE \"a-s001.vmdk\"\nRW 8 ZERO\nRW 16 FLAT \"b.raw\" 4\nparentFileNameHint=\"p.vmdk\"\n";
    run(
        desc,
        3000,
        &[0..desc.len()],
        |_| {},
        fuzzing::fuzz_vmdk_descriptor,
    );
    run(desc, 500, &[0..desc.len()], |_| {}, fuzzing::fuzz_vmdk);
}

#[test]
fn mutated_vhdx_never_panics() {
    let mib = 1 << 20;
    let hot = [
        0..16,
        0x10000..0x10100,
        0x20000..0x20100,
        0x30000..0x30080,
        0x50000..0x50200,
        0x51000..0x51080,
        0x60000..0x60040,
    ];
    run(
        &seed_vhdx(None),
        1500,
        &hot,
        fix_vhdx_checksums,
        fuzzing::fuzz_vhdx,
    );
    let diff = seed_vhdx(Some(("p.vhdx", "/nonexistent/p.vhdx")));
    let mut hot = hot.to_vec();
    hot.extend([
        0x51100..0x51200,
        0x60000 + 4096 * 8..0x60000 + 4097 * 8,
        3 * mib..3 * mib + 512,
    ]);
    run(&diff, 300, &hot, fix_vhdx_checksums, fuzzing::fuzz_vhdx);
}
