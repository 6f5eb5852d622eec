//! Fuzz entry points, called by `crates/inspect/fuzz` and by a stable-Rust mutation test over
//! the committed seeds in `fuzz/seeds/<target>/`. Every entry point must return without
//! panicking, hanging or allocating beyond its input's size on any input.
//!
//! The rpm seeds are real: header blobs and databases written by rpm 4.18 (sqlite, then
//! shrunk with `VACUUM` to 512-byte pages so the blobs use overflow pages), rpm 4.16 (ndb)
//! and Berkeley DB's `db_load` (hash and btree, both byte orders) from rpm's blobs.

use crate::packages::rpm::{self, DbKind};

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
mod tests {
    use super::*;
    use std::path::Path;

    /// The committed seeds of one fuzz target, sorted by name.
    fn seeds(target: &str) -> Vec<Vec<u8>> {
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

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

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

    fn run(target: &str, rounds: usize, entry: fn(&[u8])) {
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
