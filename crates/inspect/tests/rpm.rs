//! The rpm database reader against real databases: packages built with `rpmbuild`, installed
//! with `rpm --justdb` into each backend, and compared field by field with what `rpm -qa`
//! itself reports from the same database.
//!
//! - `rpmdb.sqlite`: Debian's rpm 4.18 (its default backend).
//! - `Packages.db` (ndb): Debian's rpm is built without ndb, so ScanCode's rpm 4.16 build from
//!   PyPI (`rpm-inspector-rpm`, installed by scripts/deps.sh; `PORTHOLE_NDB_RPM` overrides).
//! - `Packages` (Berkeley DB): Debian's rpm can only read bdb (`bdb_ro`), not write it, so the
//!   header blobs rpm stored in rpmdb.sqlite are loaded into hash and btree files with
//!   Berkeley DB's own `db_load`, in both byte orders and three page sizes; rpm's `bdb_ro`
//!   must then list the same packages from each before the parser is compared with it.
//!
//! Then hostile variants of the same files: truncations, page loops, lying header offsets.

#![allow(clippy::unwrap_used)]

mod rpm_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use porthole_inspect::packages::rpm::{parse_database, DbKind, CANDIDATES};
use porthole_inspect::packages::{Application, Parsed};
use porthole_testkit::guests::rpm::{
    bdb_dump, rpm as rpm_debian, rpmbuild, sqlite_blobs, unhex, QF, RECORD,
};
use porthole_testkit::{cached, run};

const NDB_RPM: &str = "/opt/porthole-tools/rpm-inspector-rpm/rpm_inspector_rpm/bin/rpm";

const HELLO_SPEC: &str = "\
Name: hello-porthole
Version: 1.2.3
Release: 4.fc40
Epoch: 7
Summary: A tiny test package
License: MIT
URL: https://example.org/hello
Vendor: Porthole Test Vendor
BuildArch: x86_64
%description
Grüße aus dem Test — non-ASCII ✓ text.
Second line.
%files
";

const NOARCH_SPEC: &str = "\
Name: noarch-tool
Version: 0.9
Release: 1
Summary: Architecture-independent tool
License: GPL-2.0-only
BuildArch: noarch
%description
Plain description.
%files
";

/// A main package, 20 small subpackages (so the SQLite table spans several b-tree pages) and
/// one with a 12 KiB description (so its header needs overflow pages in every format).
fn filler_spec() -> String {
    let mut s = String::from(
        "Name: filler\nVersion: 2.0\nRelease: 3\nEpoch: 1\nSummary: Filler\nLicense: MIT\n\
         %description\nFiller main package.\n%files\n",
    );
    for i in 0..20 {
        s += &format!(
            "%package -n fill-{i:02}\nSummary: Filler number {i}\n\
             %description -n fill-{i:02}\nFiller {i}.\n%files -n fill-{i:02}\n"
        );
    }
    s += "%package -n big-desc\nSummary: Large description\n%description -n big-desc\n";
    for i in 0..200 {
        s += &format!("Line {i:03} of a long description, to overflow any page size.\n");
    }
    s += "%files -n big-desc\n";
    s
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn build_rpms(top: &Path) -> Vec<PathBuf> {
    let specs = [
        ("hello.spec", HELLO_SPEC.to_string()),
        ("noarch.spec", NOARCH_SPEC.to_string()),
        ("filler.spec", filler_spec()),
    ];
    let specs: Vec<(String, String)> = specs.into_iter().map(|(n, t)| (n.into(), t)).collect();
    rpmbuild(top, &specs)
}

/// A throwaway signing key, imported as rpm's gpg-pubkey pseudo-package. The GnuPG home is
/// short-lived under /tmp (the agent's socket path must stay short) and its agent is stopped.
fn signing_key(dir: &Path) -> PathBuf {
    let home = std::env::temp_dir().join(format!("porthole-gpg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let h = path_str(&home).to_string();
    let gpg = |args: &[&str]| {
        let mut all = vec!["--homedir", &h, "--batch", "--passphrase", ""];
        all.extend_from_slice(args);
        run("gpg", "gpg", &all, None)
    };
    gpg(&[
        "--quick-gen-key",
        "Porthole Test <test@example.org>",
        "ed25519",
        "sign",
        "never",
    ]);
    let key = dir.join("key.asc");
    std::fs::write(&key, gpg(&["--armor", "--export", "test@example.org"])).unwrap();
    run(
        "gpgconf",
        "gpgconf",
        &["--homedir", &h, "--kill", "gpg-agent"],
        None,
    );
    let _ = std::fs::remove_dir_all(&home);
    key
}

fn ndb_rpm() -> String {
    let rpm = std::env::var("PORTHOLE_NDB_RPM").unwrap_or_else(|_| NDB_RPM.into());
    assert!(
        Path::new(&rpm).exists(),
        "{rpm} missing: Debian's rpm has no ndb backend; run scripts/deps.sh \
         (pip install --target /opt/porthole-tools/rpm-inspector-rpm rpm-inspector-rpm)"
    );
    rpm
}

/// Runs the ndb-capable rpm 4.16 with the settings it lacks outside its ScanCode home.
fn rpm_ndb(dbpath: &Path, args: &[&str]) -> String {
    let lock = format!("_rpmlock_path {}/.lock", path_str(dbpath));
    let mut all = vec![
        "--rcfile",
        "/usr/lib/rpm/rpmrc",
        "--define",
        &lock,
        "--define",
        "_pkgverify_level none",
        "--define",
        "_db_backend ndb",
        "--dbpath",
        path_str(dbpath),
    ];
    all.extend_from_slice(args);
    run(&ndb_rpm(), "rpm-inspector-rpm (PyPI)", &all, None)
}

const BDB_VARIANTS: &[(&str, &str, bool, u32)] = &[
    ("Packages-hash-le-512", "hash", false, 512),
    ("Packages-hash-be-4096", "hash", true, 4096),
    ("Packages-btree-le-1024", "btree", false, 1024),
    ("Packages-btree-be-8192", "btree", true, 8192),
];

const NAMES: &[&str] = &[
    "rpmdb.sqlite",
    "Packages.db",
    "Packages-hash-le-512",
    "Packages-hash-be-4096",
    "Packages-btree-le-1024",
    "Packages-btree-be-8192",
    "expected.txt",
    "expected-ndb.txt",
];

/// Builds (once, cached) every database and the `rpm -qa` listing they must all give.
fn databases() -> BTreeMap<&'static str, PathBuf> {
    let recipe = format!(
        "rpmdb v3\n{HELLO_SPEC}{NOARCH_SPEC}{}{BDB_VARIANTS:?}",
        filler_spec()
    );
    let paths = cached(&recipe, NAMES, |out| {
        let work = out[0].parent().unwrap().join("work");
        let _ = std::fs::remove_dir_all(&work);
        let top = work.join("top");
        std::fs::create_dir_all(&top).unwrap();
        let rpms = build_rpms(&top);
        let rpms: Vec<&str> = rpms.iter().map(|p| path_str(p)).collect();
        let key = signing_key(&work);
        let install: Vec<&str> = ["-i", "--justdb", "--nodeps", "--noscripts", "--nosignature"]
            .into_iter()
            .chain(rpms.iter().copied())
            .collect();

        let sq = work.join("sqlite");
        std::fs::create_dir_all(&sq).unwrap();
        rpm_debian(&sq, "sqlite", &install);
        rpm_debian(&sq, "sqlite", &["--import", path_str(&key)]);
        let expected = rpm_debian(&sq, "sqlite", &["-qa", "--qf", QF]);
        std::fs::copy(sq.join("rpmdb.sqlite"), &out[0]).unwrap();

        let nd = work.join("ndb");
        std::fs::create_dir_all(&nd).unwrap();
        rpm_ndb(&nd, &install);
        // That rpm build has no --import: its database has no gpg-pubkey.
        let expected_ndb = rpm_ndb(&nd, &["-qa", "--qf", QF]);
        std::fs::copy(nd.join("Packages.db"), &out[1]).unwrap();
        std::fs::write(&out[7], expected_ndb).unwrap();

        let blobs = sqlite_blobs(&out[0]);
        for (i, &(name, ty, be, size)) in BDB_VARIANTS.iter().enumerate() {
            let dir = work.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join("Packages");
            let dump = bdb_dump(&blobs, ty, be, size);
            run("db_load", "db-util", &[path_str(&file)], Some(&dump));
            assert_eq!(
                sorted(&rpm_debian(&dir, "bdb_ro", &["-qa", "--qf", QF])),
                sorted(&expected),
                "rpm's bdb_ro does not read {name} as the sqlite database"
            );
            std::fs::copy(&file, &out[2 + i]).unwrap();
        }
        std::fs::write(&out[6], &expected).unwrap();
    });
    NAMES.iter().copied().zip(paths).collect()
}

fn sorted(listing: &str) -> Vec<String> {
    let mut v: Vec<String> = listing
        .split(RECORD)
        .filter(|r| !r.trim().is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// `rpm -qa` output as applications.
fn expected(listing: &str) -> Vec<Application> {
    let mut apps: Vec<Application> = rpm_common::applications(listing);
    apps.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    apps
}

/// Compares package by package (short messages), seeing what `rpm -qa` shows: it prints an
/// absent tag as `(none)`, and rpm's key import stores a literal `(none)` SOURCERPM.
fn assert_same(db: &str, got: &[Application], want: &[Application]) {
    let shown = |a: &Application| {
        let mut a = a.clone();
        for f in [
            &mut a.source_package,
            &mut a.url,
            &mut a.publisher,
            &mut a.arch,
        ] {
            if f.as_deref() == Some("(none)") {
                *f = None;
            }
        }
        a
    };
    let names = |v: &[Application]| v.iter().map(|a| a.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{db}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(shown(g), *w, "{db}: {}", w.name);
    }
}

fn parse(kind: DbKind, bytes: &[u8]) -> Parsed {
    let mut p = parse_database(kind, bytes);
    p.applications
        .sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    p
}

fn read(db: &BTreeMap<&str, PathBuf>, name: &str) -> Vec<u8> {
    std::fs::read(&db[name]).unwrap()
}

fn kind_of(name: &str) -> DbKind {
    match name {
        "rpmdb.sqlite" => DbKind::Sqlite,
        "Packages.db" => DbKind::Ndb,
        _ => DbKind::Bdb,
    }
}

#[test]
fn every_backend_matches_rpm_qa() {
    let db = databases();
    let listing = |name| expected(&String::from_utf8(read(&db, name)).unwrap());
    let want = listing("expected.txt");
    assert_eq!(
        want.len(),
        25,
        "hello, noarch, filler + 20 + big-desc, gpg-pubkey"
    );
    let want_ndb = listing("expected-ndb.txt");
    let mut no_key = want.clone();
    no_key.retain(|a| a.name != "gpg-pubkey");
    assert_eq!(
        want_ndb, no_key,
        "rpm 4.16 (ndb) and 4.18 (sqlite) disagree"
    );
    for &name in &NAMES[..6] {
        let want = if name == "Packages.db" {
            &want_ndb
        } else {
            &want
        };
        let bytes = read(&db, name);
        assert_eq!(DbKind::detect(&bytes), Some(kind_of(name)), "{name}");
        let got = parse(kind_of(name), &bytes);
        assert!(got.warnings.is_empty(), "{name}: {:?}", got.warnings);
        assert_same(name, &got.applications, want);
    }
}

#[test]
fn fields_are_those_put_in() {
    let db = databases();
    let got = parse(DbKind::Sqlite, &read(&db, "rpmdb.sqlite"));
    let find = |n: &str| got.applications.iter().find(|a| a.name == n).unwrap();
    let hello = find("hello-porthole");
    assert_eq!(hello.epoch, 7);
    assert_eq!(hello.version.as_deref(), Some("1.2.3"));
    assert_eq!(hello.release.as_deref(), Some("4.fc40"));
    assert_eq!(hello.arch.as_deref(), Some("x86_64"));
    assert_eq!(hello.url.as_deref(), Some("https://example.org/hello"));
    assert_eq!(hello.publisher.as_deref(), Some("Porthole Test Vendor"));
    assert_eq!(
        hello.source_package.as_deref(),
        Some("hello-porthole-1.2.3-4.fc40.src.rpm")
    );
    assert_eq!(
        hello.description.as_deref(),
        Some("Grüße aus dem Test — non-ASCII ✓ text.\nSecond line.")
    );
    let tool = find("noarch-tool");
    assert_eq!((tool.epoch, tool.arch.as_deref()), (0, Some("noarch")));
    assert_eq!(tool.url, None);
    assert!(find("big-desc").description.as_ref().unwrap().len() > 11_000);
    // Kept, as virt-inspector (librpm's iterator) keeps it.
    let key = find("gpg-pubkey");
    assert_eq!(key.arch, None);
}

#[test]
fn candidates_cover_every_backend_in_both_directories() {
    for dir in ["/usr/lib/sysimage/rpm/", "/var/lib/rpm/"] {
        for kind in [DbKind::Sqlite, DbKind::Ndb, DbKind::Bdb] {
            let path = format!("{dir}{}", kind.file_name());
            assert!(CANDIDATES.contains(&(path.as_str(), kind)), "{path}");
        }
    }
    assert_eq!(CANDIDATES[0].1, DbKind::Sqlite);
    assert_eq!(DbKind::detect(b"not a database at all"), None);
}

/// Every prefix length of every database: never a panic, and what comes out is a subset of
/// the packages in the whole file.
#[test]
fn truncated_databases_give_warnings_and_a_subset() {
    let db = databases();
    for &name in &NAMES[..6] {
        let bytes = read(&db, name);
        let full = parse(kind_of(name), &bytes).applications;
        let mut cut_lost_some = false;
        for cut in (0..bytes.len()).step_by(bytes.len() / 97 + 1) {
            let got = parse(kind_of(name), &bytes[..cut]);
            for app in &got.applications {
                assert!(full.contains(app), "{name} cut at {cut}: {app:?}");
            }
            if got.applications.len() < full.len() {
                assert!(!got.warnings.is_empty(), "{name} cut at {cut}: silent loss");
                cut_lost_some = true;
            }
        }
        assert!(cut_lost_some, "{name}");
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn names(p: &Parsed) -> Vec<&str> {
    p.applications.iter().map(|a| a.name.as_str()).collect()
}

/// An interior page of the Packages b-tree whose first child points back at itself: that
/// subtree is lost with a warning, the rest of the table still comes out.
#[test]
fn sqlite_btree_loop_is_a_warning() {
    let db = databases();
    let mut bytes = read(&db, "rpmdb.sqlite");
    let full = parse(DbKind::Sqlite, &bytes).applications.len();
    let root = run(
        "sqlite3",
        "sqlite3",
        &[
            path_str(&db["rpmdb.sqlite"]),
            "SELECT rootpage FROM sqlite_schema WHERE name = 'Packages'",
        ],
        None,
    );
    let root: u32 = root.trim().parse().unwrap();
    let page_size = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    let at = (root as usize - 1) * page_size;
    assert_eq!(bytes[at], 0x05, "Packages root is an interior page");
    let cell = usize::from(u16::from_be_bytes([bytes[at + 12], bytes[at + 13]]));
    bytes[at + cell..at + cell + 4].copy_from_slice(&root.to_be_bytes());
    let got = parse(DbKind::Sqlite, &bytes);
    assert!(
        got.warnings.iter().any(|w| w.contains("reached twice")),
        "{:?}",
        got.warnings
    );
    assert!(!got.applications.is_empty() && got.applications.len() < full);
}

/// Berkeley DB: a bucket page chained to itself, and an overflow page chained to itself
/// (a looping value is lost, with a warning).
#[test]
fn bdb_page_loops_are_warnings() {
    let db = databases();
    let bytes = read(&db, "Packages-hash-le-512");
    let full = parse(DbKind::Bdb, &bytes).applications.len();
    let page = |b: &[u8], n: usize| b[n * 512..(n + 1) * 512].to_vec();
    let pages = bytes.len() / 512;
    let le32 = |p: &[u8], at: usize| u32::from_le_bytes(p[at..at + 4].try_into().unwrap());
    let mut tried = [false; 2];
    for n in 1..pages {
        let p = page(&bytes, n);
        let (ty, next) = (p[25], le32(&p, 16));
        // 13 = hash page with a next page; 7 = overflow page with a next page.
        // A bucket page chained to itself (real buckets here fit one page each).
        let which = match ty {
            13 | 2 if !tried[0] => 0,
            7 if next != 0 && !tried[1] => 1,
            _ => continue,
        };
        tried[which] = true;
        let mut bad = bytes.clone();
        bad[n * 512 + 16..n * 512 + 20].copy_from_slice(&(n as u32).to_le_bytes());
        let got = parse(DbKind::Bdb, &bad);
        let want = ["reached twice", "overflow chain"][which];
        assert!(
            got.warnings.iter().any(|w| w.contains(want)),
            "page {n}: {:?}",
            got.warnings
        );
        // The looping bucket's own records were read before the loop was seen.
        let lost = [0, 1][which];
        assert_eq!(got.applications.len(), full - lost, "page {n}");
    }
    assert_eq!(
        tried,
        [true, true],
        "the 512-byte-page hash file has both kinds of page"
    );
}

/// One header's SUMMARY offset points far past its store and its DESCRIPTION offset is
/// negative: those two fields are lost with warnings naming the package record.
#[test]
fn lying_header_offsets_cost_only_those_fields() {
    let db = databases();
    let mut bytes = read(&db, "rpmdb.sqlite");
    let before = parse(DbKind::Sqlite, &bytes);
    let (hnum, blob) = sqlite_blobs(&db["rpmdb.sqlite"])
        .into_iter()
        .map(|(n, hex)| (n.to_string(), unhex(&hex)))
        .find(|(_, b)| b.windows(15).any(|w| w == b"hello-porthole\0"))
        .unwrap();
    let at = bytes.windows(blob.len()).position(|w| w == blob).unwrap();
    let il = be32(&blob, 0) as usize;
    for i in 0..il {
        let e = at + 8 + 16 * i;
        let offset: i32 = match be32(&bytes, e) {
            1004 => 0x7fff_fff0,
            1005 => -8,
            _ => continue,
        };
        bytes[e + 8..e + 12].copy_from_slice(&offset.to_be_bytes());
    }
    let got = parse(DbKind::Sqlite, &bytes);
    assert_eq!(names(&got), names(&before));
    let record = format!("rpmdb.sqlite package {hnum}: ");
    for tag in ["tag 1004", "tag 1005"] {
        assert!(
            got.warnings
                .iter()
                .any(|w| w.starts_with(&record) && w.contains(tag)),
            "{tag}: {:?}",
            got.warnings
        );
    }
    let hello = got
        .applications
        .iter()
        .find(|a| a.name == "hello-porthole")
        .unwrap();
    assert_eq!(
        (hello.summary.as_ref(), hello.description.as_ref()),
        (None, None)
    );
    assert_eq!(hello.url.as_deref(), Some("https://example.org/hello"));
}

/// ndb: one slot claims blocks beyond the file, another blob's checksum is wrong.
#[test]
fn ndb_bad_slot_and_bad_checksum() {
    let db = databases();
    let bytes = read(&db, "Packages.db");
    let full = parse(DbKind::Ndb, &bytes).applications;
    let le32 = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let slots: Vec<usize> = (2..256)
        .map(|i| i * 16)
        .filter(|&at| &bytes[at..at + 4] == b"Slot" && le32(&bytes, at + 8) != 0)
        .collect();
    assert_eq!(slots.len(), full.len());
    let mut bad = bytes.clone();
    bad[slots[0] + 12..slots[0] + 16].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let blob_at = le32(&bytes, slots[1] + 8) as usize * 16;
    bad[blob_at + 8] ^= 0xff; // the blob head's timestamp: covered by the checksum only
    let got = parse(DbKind::Ndb, &bad);
    assert_eq!(got.applications.len(), full.len() - 1);
    assert!(
        got.warnings.iter().any(|w| w.contains("outside the file")),
        "{:?}",
        got.warnings
    );
    assert!(
        got.warnings.iter().any(|w| w.contains("adler32")),
        "{:?}",
        got.warnings
    );
}
