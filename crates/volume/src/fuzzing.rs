//! Fuzz entry points (called by `crates/volume/fuzz` and by a stable-Rust mutation test) and
//! small crafted seed images. Every entry point must return without panicking on any input.

use std::sync::Arc;

use porthole_image::{BlockDevice, MemDevice};

use crate::bytes::{crc32_raw, Dev};
use crate::lvm::{self, config, label, metadata};
use crate::partition::read_partition_table;

fn mem(data: &[u8]) -> Dev {
    Arc::new(MemDevice(data.to_vec()))
}

/// Reads a few bytes at the start and end of a device, ignoring errors.
fn touch(dev: &dyn BlockDevice) {
    let mut buf = [0u8; 16];
    let size = dev.size();
    let _ = dev.read_exact_at(&mut buf, 0);
    let _ = dev.read_exact_at(&mut buf, size.saturating_sub(16));
}

/// MBR/GPT parsing of `data` as a whole disk, then a read of each partition.
pub fn fuzz_partitions(data: &[u8]) {
    if let Ok(Some(table)) = read_partition_table(&mem(data)) {
        for p in &table.partitions {
            touch(p.device.as_ref());
        }
    }
}

/// The LVM text metadata parser and the VG model built from it.
pub fn fuzz_lvm_metadata(data: &[u8]) {
    if let Ok(root) = config::parse(data) {
        let _ = metadata::vg_from_config(&root);
    }
}

/// LVM label + metadata area + metadata, as a PV, assembled and every LV read.
pub fn fuzz_lvm_pv(data: &[u8]) {
    let _ = label::parse_label(data);
    let Ok(Some(pv)) = lvm::probe(&mem(data)) else {
        return;
    };
    if let Ok(groups) = lvm::assemble_pvs(&[pv]) {
        for vg in &groups {
            for (_, lv) in vg.logical_volumes() {
                if let Ok(lv) = lv {
                    touch(&lv);
                }
            }
        }
    }
}

/// md superblock probing and the RAID1 data device.
pub fn fuzz_md(data: &[u8]) {
    let dev = mem(data);
    if let Ok(Some(member)) = crate::md::probe(&dev) {
        if let Ok(array) = crate::md::raid1_device(&dev, &member) {
            touch(array.as_ref());
        }
    }
}

/// Everything at once: `data` as one disk given to [`crate::scan`].
pub fn fuzz_scan(data: &[u8]) {
    for v in crate::scan(&[mem(data)]).volumes {
        touch(v.device.as_ref());
    }
}

// ---- crafted seeds ----

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn mbr_entry(buf: &mut [u8], sector: usize, slot: usize, ty: u8, start: u32, sectors: u32) {
    let at = sector * 512 + 446 + 16 * slot;
    put(buf, at + 4, &[ty]);
    put(buf, at + 8, &start.to_le_bytes());
    put(buf, at + 12, &sectors.to_le_bytes());
    put(buf, sector * 512 + 510, &[0x55, 0xaa]);
}

/// A 64 KiB MBR disk: two primaries, an extended partition with two logical partitions.
pub fn seed_mbr() -> Vec<u8> {
    let mut d = vec![0u8; 128 * 512];
    put(&mut d, 440, &0xdead_beef_u32.to_le_bytes());
    mbr_entry(&mut d, 0, 0, 0x83, 2, 10);
    mbr_entry(&mut d, 0, 1, 0x8e, 12, 10);
    mbr_entry(&mut d, 0, 2, 0x05, 30, 90);
    mbr_entry(&mut d, 30, 0, 0x83, 1, 20);
    mbr_entry(&mut d, 30, 1, 0x05, 30, 40);
    mbr_entry(&mut d, 60, 0, 0x82, 1, 20);
    d
}

/// A 64 KiB GPT disk with two partitions, both header copies and CRCs valid.
pub fn seed_gpt() -> Vec<u8> {
    let mut d = vec![0u8; 128 * 512];
    mbr_entry(&mut d, 0, 0, 0xee, 1, 127);
    for (i, (ty, first, last, name)) in [
        ("0FC63DAF-8483-4772-8E79-3D69D8477DE4", 34u64, 60u64, "root"),
        ("E6D6D379-F507-44C2-A23C-238F2A3DF928", 61, 90, "lvm"),
    ]
    .into_iter()
    .enumerate()
    {
        for base in [2usize, 95] {
            let at = base * 512 + i * 128;
            put(&mut d, at, &crate::Guid::from_str_const(ty).0);
            put(&mut d, at + 16, &[i as u8 + 1; 16]);
            put(&mut d, at + 32, &first.to_le_bytes());
            put(&mut d, at + 40, &last.to_le_bytes());
            let name: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
            put(&mut d, at + 56, &name);
        }
    }
    for (lba, alt, entries) in [(1u64, 127u64, 2u64), (127, 1, 95)] {
        let at = lba as usize * 512;
        put(&mut d, at, b"EFI PART");
        put(&mut d, at + 8, &0x10000u32.to_le_bytes());
        put(&mut d, at + 12, &92u32.to_le_bytes());
        put(&mut d, at + 24, &lba.to_le_bytes());
        put(&mut d, at + 32, &alt.to_le_bytes());
        put(&mut d, at + 40, &34u64.to_le_bytes());
        put(&mut d, at + 48, &94u64.to_le_bytes());
        put(&mut d, at + 56, &[0x42; 16]);
        put(&mut d, at + 72, &entries.to_le_bytes());
        put(&mut d, at + 80, &128u32.to_le_bytes());
        put(&mut d, at + 84, &128u32.to_le_bytes());
    }
    fix_gpt_crcs(&mut d);
    d
}

/// Recomputes both GPT copies' CRCs (entry array, then header) so mutations reach the checks
/// behind them.
pub fn fix_gpt_crcs(d: &mut [u8]) {
    let last = (d.len() / 512).saturating_sub(1);
    for lba in [1usize, last] {
        let at = lba * 512;
        let Some(h) = d.get(at..at + 92) else {
            continue;
        };
        let entries_lba = crate::bytes::le_u64(h, 72);
        let count = u64::from(crate::bytes::le_u32(h, 80));
        let size = u64::from(crate::bytes::le_u32(h, 84));
        let array_at = entries_lba.saturating_mul(512);
        let array_len = count.saturating_mul(size).min(1 << 20);
        let start = usize::try_from(array_at).unwrap_or(usize::MAX);
        let end = start.saturating_add(array_len as usize);
        if let Some(array) = d.get(start..end) {
            let crc = crc32fast::hash(array);
            put(d, at + 88, &crc.to_le_bytes());
        }
        put(d, at + 16, &[0; 4]);
        let crc = d.get(at..at + 92).map(crc32fast::hash).unwrap_or(0);
        put(d, at + 16, &crc.to_le_bytes());
    }
}

/// The PV UUID of [`seed_pv`].
pub const SEED_PV_UUID: &str = "AbCdEf0123456789AbCdEf0123456789";
const MDA_AT: usize = 4096;
const MDA_SIZE: usize = 65536 - 4096;

/// Text metadata of a VG `vg` with one PV `pv0` (uuid [`SEED_PV_UUID`], 1 MiB extents at
/// sector 128) and an LV `lv0` of two linear segments.
pub fn seed_metadata() -> String {
    format!(
        "# Generated by porthole\n\ncontents = \"Text Format Volume Group\"\nversion = 1\n\n\
vg {{\n\tid = \"vgid01-2345-6789-abcd-ef01-2345-678901\"\n\tseqno = 3\n\tformat = \"lvm2\"\n\
\tstatus = [\"RESIZEABLE\", \"READ\", \"WRITE\"]\n\tflags = []\n\textent_size = 8\n\tmax_lv = 0\n\tmax_pv = 0\n\n\
\tphysical_volumes {{\n\t\tpv0 {{\n\t\t\tid = \"{}\"\n\t\t\tdevice = \"/dev/vda\"\n\
\t\t\tstatus = [\"ALLOCATABLE\"]\n\t\t\tdev_size = 256\n\t\t\tpe_start = 128\n\t\t\tpe_count = 16\n\t\t}}\n\t}}\n\n\
\tlogical_volumes {{\n\t\tlv0 {{\n\t\t\tid = \"lvid01-2345-6789-abcd-ef01-2345-678901\"\n\
\t\t\tstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\n\t\t\tsegment_count = 2\n\n\
\t\t\tsegment1 {{\n\t\t\t\tstart_extent = 0\n\t\t\t\textent_count = 2\n\t\t\t\ttype = \"striped\"\n\
\t\t\t\tstripe_count = 1\n\t\t\t\tstripes = [\n\t\t\t\t\t\"pv0\", 4\n\t\t\t\t]\n\t\t\t}}\n\
\t\t\tsegment2 {{\n\t\t\t\tstart_extent = 2\n\t\t\t\textent_count = 4\n\t\t\t\ttype = \"striped\"\n\
\t\t\t\tstripe_count = 2\n\t\t\t\tstripe_size = 2\n\t\t\t\tstripes = [\n\t\t\t\t\t\"pv0\", 8,\n\t\t\t\t\t\"pv0\", 12\n\t\t\t\t]\n\t\t\t}}\n\
\t\t}}\n\t}}\n}}\n",
        dashed(SEED_PV_UUID)
    )
}

fn dashed(u: &str) -> String {
    let parts = [
        (0, 6),
        (6, 10),
        (10, 14),
        (14, 18),
        (18, 22),
        (22, 26),
        (26, 32),
    ];
    parts
        .iter()
        .filter_map(|&(a, b)| u.get(a..b))
        .collect::<Vec<_>>()
        .join("-")
}

/// A 128 KiB PV: label in sector 1, one metadata area at 4 KiB holding `text` (wrapped around
/// the ring buffer's end when `wrap`), extents of 4 KiB from 64 KiB.
pub fn seed_pv(text: &[u8], wrap: bool) -> Vec<u8> {
    let mut d = vec![0u8; 128 * 1024];
    let l = 512;
    put(&mut d, l, b"LABELONE");
    put(&mut d, l + 8, &1u64.to_le_bytes());
    put(&mut d, l + 20, &32u32.to_le_bytes());
    put(&mut d, l + 24, b"LVM2 001");
    let pv = l + 32;
    put(&mut d, pv, SEED_PV_UUID.as_bytes());
    let size = d.len() as u64;
    put(&mut d, pv + 32, &size.to_le_bytes());
    put(&mut d, pv + 40, &65536u64.to_le_bytes()); // data area, size 0 = to the end
    put(&mut d, pv + 72, &(MDA_AT as u64).to_le_bytes());
    put(&mut d, pv + 80, &(MDA_SIZE as u64).to_le_bytes());
    let m = MDA_AT;
    put(&mut d, m + 4, label::MDA_MAGIC);
    put(&mut d, m + 20, &1u32.to_le_bytes());
    put(&mut d, m + 24, &(MDA_AT as u64).to_le_bytes());
    put(&mut d, m + 32, &(MDA_SIZE as u64).to_le_bytes());
    let offset = if wrap { MDA_SIZE - 100 } else { 512 };
    let first = text.len().min(MDA_SIZE - offset);
    put(&mut d, m + offset, text.get(..first).unwrap_or_default());
    put(&mut d, m + 512, text.get(first..).unwrap_or_default());
    put(&mut d, m + 40, &(offset as u64).to_le_bytes());
    put(&mut d, m + 48, &(text.len() as u64).to_le_bytes());
    for (i, b) in d.iter_mut().enumerate().skip(65536) {
        *b = (i / 4096) as u8 ^ (i as u8);
    }
    fix_pv_crcs(&mut d);
    d
}

/// Recomputes the metadata text CRC, the metadata area header CRC and the label CRC of a PV
/// laid out like [`seed_pv`].
pub fn fix_pv_crcs(d: &mut [u8]) {
    let m = MDA_AT;
    let le64 = |d: &[u8], at| crate::bytes::le_u64(d, at);
    let (off, len) = (le64(d, m + 40) as usize, le64(d, m + 48) as usize);
    let first = len.min(MDA_SIZE.saturating_sub(off));
    let start = (m + 512).max(m.saturating_add(off));
    let a = d
        .get(start..start.saturating_add(first))
        .unwrap_or_default();
    let crc = crc32_raw(label::INITIAL_CRC, a);
    let rest = len.saturating_sub(first).min(MDA_SIZE);
    let crc = crc32_raw(crc, d.get(m + 512..m + 512 + rest).unwrap_or_default());
    put(d, m + 56, &crc.to_le_bytes());
    let crc = crc32_raw(
        label::INITIAL_CRC,
        d.get(m + 4..m + 512).unwrap_or_default(),
    );
    put(d, m, &crc.to_le_bytes());
    let crc = crc32_raw(
        label::INITIAL_CRC,
        d.get(512 + 20..1024).unwrap_or_default(),
    );
    put(d, 512 + 16, &crc.to_le_bytes());
}

/// A 64 KiB RAID1 member with a 1.2 superblock at 4 KiB and data from 8 KiB.
pub fn seed_md() -> Vec<u8> {
    let mut d = vec![0u8; 64 * 1024];
    let sb = 4096;
    put(&mut d, sb, &crate::md::MD_MAGIC.to_le_bytes());
    put(&mut d, sb + 4, &1u32.to_le_bytes());
    put(&mut d, sb + 16, &[0x5a; 16]);
    put(&mut d, sb + 32, b"host:seed");
    put(&mut d, sb + 72, &1u32.to_le_bytes());
    put(&mut d, sb + 80, &100u64.to_le_bytes());
    put(&mut d, sb + 92, &2u32.to_le_bytes());
    put(&mut d, sb + 128, &16u64.to_le_bytes());
    put(&mut d, sb + 136, &100u64.to_le_bytes());
    put(&mut d, sb + 144, &8u64.to_le_bytes());
    put(&mut d, sb + 220, &2u32.to_le_bytes());
    fix_md_csum(&mut d);
    d
}

/// Recomputes the checksum of the 1.2 superblock at 4 KiB.
pub fn fix_md_csum(d: &mut [u8]) {
    let Some(sb) = d.get_mut(4096..8192) else {
        return;
    };
    let max_dev = crate::bytes::le_u32(sb, 220).min(1920);
    let csum = crate::md::checksum(sb, max_dev);
    put(sb, 216, &csum.to_le_bytes());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use porthole_mutate::Rng;

    /// One mutation: a bit flip, a byte or 4/8-byte field overwrite with an edge value, or a
    /// truncation; positions favour `hot` (where the structures are).
    fn mutate(rng: &mut Rng, data: &mut Vec<u8>, hot: &[std::ops::Range<usize>]) {
        let pos = if rng.below(4) > 0 && !hot.is_empty() {
            let r = &hot[rng.below(hot.len())];
            r.start + rng.below(r.len())
        } else {
            rng.below(data.len())
        };
        let edge: [u64; 6] = [0, 1, u64::MAX, u64::from(u32::MAX), 1 << 32, rng.next()];
        match rng.below(5) {
            0 => {
                if let Some(b) = data.get_mut(pos) {
                    *b ^= 1 << rng.below(8);
                }
            }
            1 => put(data, pos, &[rng.next() as u8]),
            2 => put(data, pos & !3, &(edge[rng.below(6)] as u32).to_le_bytes()),
            3 => put(data, pos & !7, &edge[rng.below(6)].to_le_bytes()),
            _ => data.truncate(pos),
        }
    }

    fn run(
        seed: &[u8],
        rounds: usize,
        hot: &[std::ops::Range<usize>],
        fix: fn(&mut [u8]),
        entry: fn(&[u8]),
    ) {
        entry(seed);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed.len() as u64);
        for i in 0..rounds {
            let mut data = seed.to_vec();
            for _ in 0..1 + rng.below(4) {
                mutate(&mut rng, &mut data, hot);
            }
            // Half the time repair the checksums so the mutation reaches the parser behind them.
            if i % 2 == 0 {
                fix(&mut data);
            }
            entry(&data);
        }
    }

    #[test]
    fn seeds_parse() {
        let t = read_partition_table(&mem(&seed_mbr())).unwrap().unwrap();
        assert_eq!(
            t.partitions.iter().map(|p| p.number).collect::<Vec<_>>(),
            [1, 2, 5, 6]
        );
        let t = read_partition_table(&mem(&seed_gpt())).unwrap().unwrap();
        assert_eq!(t.partitions.len(), 2);
        assert!(!t.used_backup_gpt);
        for wrap in [false, true] {
            let pv = lvm::probe(&mem(&seed_pv(seed_metadata().as_bytes(), wrap)))
                .unwrap()
                .unwrap();
            let vg = &lvm::assemble_pvs(&[pv]).unwrap()[0];
            let lv = vg.logical_volume("lv0").unwrap();
            assert_eq!(lv.size(), 6 * 4096);
        }
    }

    #[test]
    fn mutated_partition_tables_never_panic() {
        let hot = [0..1024, 30 * 512..30 * 512 + 512, 60 * 512..60 * 512 + 512];
        run(&seed_mbr(), 3000, &hot, |_| {}, fuzz_partitions);
        let hot = [446..512, 512..1536, 127 * 512..128 * 512];
        run(&seed_gpt(), 3000, &hot, fix_gpt_crcs, fuzz_partitions);
        run(&seed_gpt(), 300, &hot, fix_gpt_crcs, fuzz_scan);
    }

    #[test]
    fn mutated_lvm_never_panics() {
        let text = seed_metadata();
        let text_hot = [0..text.len() / 2, text.len() / 2..text.len()];
        run(text.as_bytes(), 3000, &text_hot, |_| {}, fuzz_lvm_metadata);
        let pv = seed_pv(text.as_bytes(), false);
        let hot = [
            512..700,
            MDA_AT..MDA_AT + 64,
            MDA_AT + 512..MDA_AT + 512 + text.len(),
        ];
        run(&pv, 3000, &hot, fix_pv_crcs, fuzz_lvm_pv);
        let pv = seed_pv(text.as_bytes(), true);
        run(&pv, 1000, &hot, fix_pv_crcs, fuzz_lvm_pv);
        run(&pv, 300, &hot, fix_pv_crcs, fuzz_scan);
    }

    #[test]
    fn mutated_md_superblocks_never_panic() {
        let md = seed_md();
        assert!(crate::md::probe(&mem(&md)).unwrap().is_some());
        let hot = [4096..4096 + 256, 4096 + 256..4096 + 264];
        run(&md, 3000, &hot, fix_md_csum, fuzz_md);
        run(&md, 300, &hot, fix_md_csum, fuzz_scan);
    }
}
