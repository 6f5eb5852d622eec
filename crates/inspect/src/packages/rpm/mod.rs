//! The rpm database of RPM-based guests, in each of the three formats rpm has used.
//!
//! Every format stores one [header blob](header) per installed package; they differ in the
//! container:
//!
//! | file | backend | distributions |
//! |---|---|---|
//! | `rpmdb.sqlite` | [`sqlite`] | Fedora 33+, RHEL 9+, newer SUSE |
//! | `Packages.db` | [`ndb`] | openSUSE / SLES since 2021 |
//! | `Packages` | [`bdb`] (Berkeley DB hash or btree) | RHEL ≤ 8, CentOS 7/8, older Fedora and SUSE |
//!
//! The inspection layer looks for [`CANDIDATES`] in order under the guest root, reads the
//! first present file (capped at [`MAX_DB_BYTES`]) and hands the bytes to
//! [`parse_database`]. Packages come out as rpm's iterator returns them (by package number);
//! `gpg-pubkey` pseudo-packages (imported signing keys) are kept, as virt-inspector keeps
//! them: libguestfs lists whatever librpm's `rpmdbNextIterator` yields, unfiltered.
//!
//! SQLite is read by a small reader of its b-tree format ([`sqlite`]) rather than by linking
//! SQLite: only one table of one file is needed, and our own reader is bounded and fuzzed
//! like the other parsers here, builds without a C compiler, and needs no process-global
//! heap limit to stay within a fixed allocation on hostile input.

pub mod bdb;
pub mod header;
pub mod ndb;
pub mod sqlite;

use super::{Application, Parsed};

/// How many record bytes a reader may still gather. In a sound database every stored byte
/// belongs to one record, so the records add up to less than the file; hostile files can make
/// many records share the same bytes (overlapping slots, cells or overflow chains), which
/// would make reading quadratic. Readers take from this before copying or checking a record
/// and stop, with one warning, when it runs out.
pub(crate) struct Budget(std::cell::Cell<u64>);

impl Budget {
    pub(crate) fn for_file(len: usize) -> Self {
        Budget(std::cell::Cell::new(2 * len as u64 + (64 << 10)))
    }

    /// Takes `n` bytes; when fewer are left, empties the budget and returns false.
    pub(crate) fn take(&self, n: u64) -> bool {
        let left = self.0.get();
        self.0.set(left.saturating_sub(n));
        n <= left && left > 0
    }

    pub(crate) fn exhausted(&self) -> bool {
        self.0.get() == 0
    }
}

/// Which container format a database file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DbKind {
    /// `rpmdb.sqlite`.
    Sqlite,
    /// `Packages.db` (ndb).
    Ndb,
    /// `Packages` (Berkeley DB).
    Bdb,
}

impl DbKind {
    /// Guesses the format from the file's first bytes.
    pub fn detect(bytes: &[u8]) -> Option<DbKind> {
        if bytes.starts_with(b"SQLite format 3\0") {
            return Some(DbKind::Sqlite);
        }
        if bytes.starts_with(b"RpmP") {
            return Some(DbKind::Ndb);
        }
        let magic = bytes.get(12..16)?;
        let known = [0x0006_1561u32, 0x0005_3162];
        known
            .iter()
            .any(|m| magic == m.to_le_bytes() || magic == m.to_be_bytes())
            .then_some(DbKind::Bdb)
    }

    /// The file name rpm gives this backend's package store.
    pub fn file_name(self) -> &'static str {
        match self {
            DbKind::Sqlite => "rpmdb.sqlite",
            DbKind::Ndb => "Packages.db",
            DbKind::Bdb => "Packages",
        }
    }
}

/// Where a guest's rpm database may be, in the order to try: `/usr/lib/sysimage/rpm` first
/// (where newer Fedora and openSUSE keep it, `/var/lib/rpm` then being a symlink to it or
/// stale), and within each directory the newest backend first, since a converted database
/// can leave the old file behind.
pub const CANDIDATES: &[(&str, DbKind)] = &[
    ("/usr/lib/sysimage/rpm/rpmdb.sqlite", DbKind::Sqlite),
    ("/usr/lib/sysimage/rpm/Packages.db", DbKind::Ndb),
    ("/usr/lib/sysimage/rpm/Packages", DbKind::Bdb),
    ("/var/lib/rpm/rpmdb.sqlite", DbKind::Sqlite),
    ("/var/lib/rpm/Packages.db", DbKind::Ndb),
    ("/var/lib/rpm/Packages", DbKind::Bdb),
];

/// The largest database file the inspection layer should read (real ones are tens of MiB:
/// a full Fedora workstation's rpmdb.sqlite is about 100 MiB).
pub const MAX_DB_BYTES: u64 = 1 << 30;

/// Reads every package of a database of `kind`. Never fails: a database that cannot be
/// opened at all gives no applications and one warning; a damaged record gives a warning
/// naming it and the other records still come out.
pub fn parse_database(kind: DbKind, bytes: &[u8]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut apps: Vec<Application> = Vec::new();
    let mut record_warnings = Vec::new();
    let file = kind.file_name();
    let mut on_record = |num: u64, blob: &[u8]| {
        let record = format!("{file} package {num}");
        if let Some(app) = header::application(blob, &record, &mut record_warnings) {
            apps.push(app);
        }
    };
    let opened = match kind {
        DbKind::Sqlite => {
            sqlite::read(bytes, &mut on_record, &mut parsed.warnings).map_err(|e| e.to_string())
        }
        DbKind::Ndb => {
            ndb::read(bytes, &mut on_record, &mut parsed.warnings).map_err(|e| e.to_string())
        }
        DbKind::Bdb => {
            bdb::read(bytes, &mut on_record, &mut parsed.warnings).map_err(|e| e.to_string())
        }
    };
    if let Err(e) = opened {
        parsed.warnings.push(format!("{file}: {e}"));
    }
    parsed.warnings.extend(record_warnings);
    parsed.applications = apps;
    parsed
}
