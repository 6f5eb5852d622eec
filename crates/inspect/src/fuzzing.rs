//! Fuzz entry points, called by `crates/inspect/fuzz` and by a stable-Rust mutation test over
//! the committed seeds in `fuzz/seeds/<target>/`. Every entry point must return without
//! panicking, hanging or allocating beyond its input's size on any input.
//!
//! The rpm seeds are real: header blobs and databases written by rpm 4.18 (sqlite, then
//! shrunk with `VACUUM` to 512-byte pages so the blobs use overflow pages), rpm 4.16 (ndb)
//! and Berkeley DB's `db_load` (hash and btree, both byte orders) from rpm's blobs.

use crate::packages::rpm::{self, DbKind};
use crate::windows::hive::Hive;

// ---- rpm databases ----

/// One rpm header blob, as a database record.
pub fn fuzz_rpm_header(data: &[u8]) {
    let mut warnings = Vec::new();
    let _ = rpm::header::application(data, "fuzz", &mut warnings);
}

pub fn fuzz_rpm_sqlite(data: &[u8]) {
    let _ = rpm::parse_database(DbKind::Sqlite, data);
}

pub fn fuzz_rpm_bdb(data: &[u8]) {
    let _ = rpm::parse_database(DbKind::Bdb, data);
}

pub fn fuzz_rpm_ndb(data: &[u8]) {
    let _ = rpm::parse_database(DbKind::Ndb, data);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod rpm_tests {
    use super::*;
    use std::path::Path;

    /// The committed seeds of one fuzz target, sorted by name.
    pub(super) fn seeds(target: &str) -> Vec<Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }

    use porthole_mutate::Rng;

    fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
        if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }

    /// One mutation: a bit flip, a byte, a 2/4-byte field in either byte order set to an
    /// edge value, or a truncation. Half the positions fall in the first 512 bytes, where the
    /// file headers, index entries and first pages are.
    fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
        if data.is_empty() {
            return;
        }
        let pos = if rng.below(2) == 0 {
            rng.below(data.len().min(512))
        } else {
            rng.below(data.len())
        };
        let edge = [
            0u32,
            1,
            2,
            0xff,
            0xffff,
            0x7fff_ffff,
            u32::MAX,
            rng.next() as u32,
        ];
        let v = edge[rng.below(edge.len())];
        match rng.below(6) {
            0 => {
                if let Some(b) = data.get_mut(pos) {
                    *b ^= 1 << rng.below(8);
                }
            }
            1 => put(data, pos, &[rng.next() as u8]),
            2 => put(data, pos & !3, &v.to_be_bytes()),
            3 => put(data, pos & !3, &v.to_le_bytes()),
            4 => put(data, pos & !1, &(v as u16).to_be_bytes()),
            _ => data.truncate(pos),
        }
    }

    pub(super) fn run(target: &str, rounds: usize, entry: fn(&[u8])) {
        for seed in seeds(target) {
            entry(&seed);
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed.len() as u64);
            for _ in 0..rounds {
                let mut data = seed.clone();
                for _ in 0..1 + rng.below(4) {
                    mutate(&mut rng, &mut data);
                }
                entry(&data);
            }
        }
    }

    #[test]
    fn seeds_are_the_packages_put_in() {
        let want = ["hello-porthole", "noarch-tool"];
        for (target, kind) in [
            ("rpm_sqlite", DbKind::Sqlite),
            ("rpm_bdb", DbKind::Bdb),
            ("rpm_ndb", DbKind::Ndb),
        ] {
            for seed in seeds(target) {
                assert_eq!(DbKind::detect(&seed), Some(kind), "{target}");
                let p = rpm::parse_database(kind, &seed);
                assert!(p.warnings.is_empty(), "{target}: {:?}", p.warnings);
                let mut names: Vec<_> = p.applications.iter().map(|a| a.name.as_str()).collect();
                names.sort();
                assert_eq!(names, want, "{target}");
            }
        }
        for (seed, name) in seeds("rpm_header").iter().zip(want) {
            let app = rpm::header::application(seed, "seed", &mut Vec::new()).unwrap();
            assert_eq!(app.name, name);
        }
    }

    #[test]
    fn mutated_rpm_headers_never_panic() {
        run("rpm_header", 3000, fuzz_rpm_header);
    }

    #[test]
    fn mutated_rpmdb_sqlite_never_panics() {
        run("rpm_sqlite", 3000, fuzz_rpm_sqlite);
    }

    #[test]
    fn mutated_berkeley_db_never_panics() {
        run("rpm_bdb", 2000, fuzz_rpm_bdb);
    }

    #[test]
    fn mutated_ndb_never_panics() {
        run("rpm_ndb", 3000, fuzz_rpm_ndb);
    }
}

// ---- Windows registry hives ----

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

/// `data` as the first bytes of `System32\cmd.exe`, whose PE header gives the architecture.
pub fn fuzz_windows_pe(data: &[u8]) {
    let _ = crate::windows::pe::arch_of(data);
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
mod windows_tests {
    use super::*;

    /// The seed is testkit's tiny PE `cmd.exe` (`porthole_testkit::guests::windows::tiny_pe`).
    #[test]
    fn mutated_pe_headers_never_panic() {
        let seeds = super::rpm_tests::seeds("windows_pe");
        assert_eq!(crate::windows::pe::arch_of(&seeds[0]), Ok("x86_64"));
        super::rpm_tests::run("windows_pe", 5000, fuzz_windows_pe);
    }

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

// ---- Linux package databases and configuration files ----

/// `data` as apk's `/lib/apk/db/installed`.
pub fn fuzz_apk_installed(data: &[u8]) {
    let _ = crate::packages::apk::parse_installed(data);
}

/// `data` as a pacman `desc` file, alone and as a database of two packages.
pub fn fuzz_pacman_desc(data: &[u8]) {
    let _ = crate::packages::pacman::parse_desc(data);
    let entries = [
        ("a-1-1".to_string(), data.to_vec()),
        ("b".to_string(), Vec::new()),
    ];
    let _ = crate::packages::pacman::parse_database(&entries);
}

/// `data` as `/etc/passwd`, `/etc/shadow` and `/etc/group`.
pub fn fuzz_passwd(data: &[u8]) {
    use crate::linux::accounts;
    let mut warnings = Vec::new();
    let _ = accounts::parse_passwd(data, &mut warnings);
    let _ = accounts::parse_shadow(data, &mut warnings);
    let _ = accounts::parse_group(data, &mut warnings);
}

/// `data` as a sudoers file.
pub fn fuzz_sudoers(data: &[u8]) {
    let _ = crate::linux::accounts::parse_sudoers(data, "/etc/sudoers");
}

/// `data` as a netplan YAML file and as a cloud-init configuration file.
pub fn fuzz_netplan(data: &[u8]) {
    let _ = crate::linux::network::netplan::parse(data, "/etc/netplan/fuzz.yaml", &mut Vec::new());
    let _ = crate::linux::system::datasource_list(data);
}

/// `data` as ifupdown's interfaces file and as an ifcfg file.
pub fn fuzz_ifupdown(data: &[u8]) {
    use crate::linux::network::{ifcfg, ifupdown};
    let _ = ifupdown::parse(data, "/etc/network/interfaces", &mut Vec::new());
    let _ = ifcfg::parse(
        data,
        "/etc/sysconfig/network-scripts/ifcfg-x",
        &mut Vec::new(),
    );
}

/// `data` as a NetworkManager keyfile and as a systemd-networkd `.network` file.
pub fn fuzz_network_keyfile(data: &[u8]) {
    use crate::linux::network::keyfile;
    let _ = keyfile::parse_networkmanager(data, "f.nmconnection", &mut Vec::new());
    let _ = keyfile::parse_networkd(data, "f.network", &mut Vec::new());
}

#[cfg(test)]
mod linux_tests {
    use super::rpm_tests::{run, seeds};
    use super::*;

    /// The seeds hold what the parsers should read, so mutations start from valid input.
    #[test]
    fn seeds_parse_cleanly() {
        for seed in seeds("apk_installed") {
            let p = crate::packages::apk::parse_installed(&seed);
            assert_eq!((p.applications.len(), p.warnings.len()), (2, 0));
        }
        for seed in seeds("pacman_desc") {
            let app = crate::packages::pacman::parse_desc(&seed).unwrap();
            assert_eq!(app.epoch, 1, "{app:?}");
        }
        let mut warnings = Vec::new();
        for seed in seeds("netplan") {
            let got = crate::linux::network::netplan::parse(&seed, "s", &mut warnings);
            assert_eq!(got.len(), 3);
        }
        for seed in seeds("sudoers") {
            let s = crate::linux::accounts::parse_sudoers(&seed, "s");
            assert_eq!(
                (s.rules.len(), s.include_dirs.len(), s.includes.len()),
                (4, 1, 1)
            );
        }
        for seed in seeds("ifupdown") {
            let got = crate::linux::network::ifupdown::parse(&seed, "s", &mut warnings);
            assert_eq!(got.len(), 3);
        }
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn mutated_apk_databases_never_panic() {
        run("apk_installed", 3000, fuzz_apk_installed);
    }

    #[test]
    fn mutated_pacman_descs_never_panic() {
        run("pacman_desc", 3000, fuzz_pacman_desc);
    }

    #[test]
    fn mutated_account_files_never_panic() {
        run("passwd", 2000, fuzz_passwd);
    }

    #[test]
    fn mutated_sudoers_never_panic() {
        run("sudoers", 3000, fuzz_sudoers);
    }

    #[test]
    fn mutated_netplan_never_panics() {
        run("netplan", 3000, fuzz_netplan);
    }

    #[test]
    fn mutated_ifupdown_never_panics() {
        run("ifupdown", 3000, fuzz_ifupdown);
    }

    #[test]
    fn mutated_network_keyfiles_never_panic() {
        run("network_keyfile", 2000, fuzz_network_keyfile);
    }
}
