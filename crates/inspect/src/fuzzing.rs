//! Fuzz entry points (called by `crates/inspect/fuzz` and by stable-Rust mutation tests) and
//! small crafted seeds. Every entry point must return without panicking on any input.

// ---- Windows registry hives ----

use crate::windows::hive::Hive;

/// Keys a fuzzed hive walk visits at most: enough to reach every key of a seed hive, few
/// enough that a crafted fan-out stays fast.
const WALK_BUDGET: usize = 20_000;

/// `data` as a SOFTWARE and as a SYSTEM hive, then every key and value of it.
pub fn fuzz_windows_registry(data: &[u8]) {
    let _ = crate::windows::read_software(data);
    let _ = crate::windows::read_system(data);
    if let Ok(hive) = Hive::new(data) {
        hive.walk(WALK_BUDGET, |_, key| {
            if let Ok(values) = key.values() {
                for value in values.into_iter().flatten() {
                    let _ = (
                        value.string(),
                        value.strings(),
                        value.dword(),
                        value.qword(),
                    );
                }
            }
        });
    }
}

/// `data` as a SOFTWARE hive's Uninstall keys.
pub fn fuzz_windows_uninstall(data: &[u8]) {
    let _ = crate::packages::windows::parse_software(data);
}

/// A valid hive holding only a root key named `root_name` (ASCII) with a security record:
/// what `hivexregedit --merge` needs to start from (hivex cannot create a hive, and Debian
/// ships no empty one). Version 1.5, one 4 KiB hive bin, clean, checksum right.
pub fn empty_hive(root_name: &str) -> Vec<u8> {
    let name = root_name.as_bytes();
    let cell_len = |data_len: usize| (4 + data_len + 7) & !7;
    let nk_at = 0x20usize;
    let sk_at = nk_at + cell_len(76 + name.len());
    let mut nk = Vec::new();
    nk.extend_from_slice(b"nk");
    nk.extend_from_slice(&0x2cu16.to_le_bytes()); // hive entry, no delete, compressed name
    nk.extend_from_slice(&[0; 12]); // timestamp, access bits
    for field in [
        0,
        0,
        0,
        u32::MAX,
        u32::MAX,
        0,
        u32::MAX,
        sk_at as u32,
        u32::MAX,
    ] {
        nk.extend_from_slice(&field.to_le_bytes()); // parent .. class name offset
    }
    nk.extend_from_slice(&[0; 20]); // largest name/class/value sizes, work var
    nk.extend_from_slice(&(name.len() as u16).to_le_bytes());
    nk.extend_from_slice(&0u16.to_le_bytes());
    nk.extend_from_slice(name);
    // A self-relative security descriptor with no owner, group or ACLs.
    let descriptor = [
        1u8, 0, 0x04, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let mut sk = Vec::new();
    sk.extend_from_slice(b"sk\0\0");
    for field in [sk_at as u32, sk_at as u32, 1, descriptor.len() as u32] {
        sk.extend_from_slice(&field.to_le_bytes()); // flink, blink, references, size
    }
    sk.extend_from_slice(&descriptor);
    let mut bin = vec![0u8; 4096];
    put(&mut bin, 0, b"hbin");
    put(&mut bin, 8, &4096u32.to_le_bytes());
    let mut at = nk_at;
    for data in [&nk, &sk] {
        let len = cell_len(data.len());
        put(&mut bin, at, &(-(len as i32)).to_le_bytes());
        put(&mut bin, at + 4, data);
        at += len;
    }
    put(&mut bin, at, &((4096 - at) as i32).to_le_bytes()); // the rest is one free cell
    let mut base = vec![0u8; 4096];
    put(&mut base, 0, b"regf");
    for (offset, field) in [
        (4, 1u32),
        (8, 1),
        (20, 1),
        (24, 5),
        (32, 1),
        (36, 0x20),
        (40, 4096),
        (44, 1),
    ] {
        put(&mut base, offset, &field.to_le_bytes());
    }
    fix_hive_checksum(&mut base);
    base.extend_from_slice(&bin);
    base
}

/// Recomputes a hive's base block checksum (the XOR of its first 127 words), so mutations
/// behind it are not all reported as checksum warnings.
pub fn fix_hive_checksum(hive: &mut [u8]) {
    let word = |h: &[u8], i: usize| {
        h.get(i * 4..i * 4 + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    };
    let sum = (0..127).fold(0, |x, i| x ^ word(hive, i));
    put(hive, 508, &sum.to_le_bytes());
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_hive_reads_back() {
        let bytes = empty_hive("ROOT");
        let hive = Hive::new(&bytes).expect("empty hive opens");
        assert!(hive.warnings().is_empty(), "{:?}", hive.warnings());
        let root = hive.root().expect("root key");
        assert_eq!(root.name(), "ROOT");
        assert!(root.subkeys().expect("no subkeys").is_empty());
        fuzz_windows_registry(&bytes);
        fuzz_windows_uninstall(&bytes);
    }

    /// The committed seeds (built by hivexregedit in tests/windows.rs) still hold what the
    /// fuzz targets should start from.
    #[test]
    fn committed_seeds_parse() {
        let software = include_bytes!("../fuzz/seeds/windows_uninstall/software-win10.hive");
        let parsed = crate::packages::windows::parse_software(software);
        assert_eq!((parsed.applications.len(), parsed.warnings.len()), (4, 0));
        let system = include_bytes!("../fuzz/seeds/windows_registry/system.hive");
        let read = crate::windows::read_system(system);
        assert_eq!(read.facts.hostname.as_deref(), Some("WIN-PORTHOLE"));
        for (seed, id) in [
            (
                &include_bytes!("../fuzz/seeds/windows_registry/software-win10.hive")[..],
                "win10",
            ),
            (
                include_bytes!("../fuzz/seeds/windows_registry/software-2022.hive"),
                "win2k22",
            ),
            (
                include_bytes!("../fuzz/seeds/windows_registry/software-win7.hive"),
                "win7",
            ),
        ] {
            let read = crate::windows::read_software(seed);
            assert_eq!(read.facts.osinfo.as_deref(), Some(id));
        }
    }
}
