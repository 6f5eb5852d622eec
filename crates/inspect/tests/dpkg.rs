//! dpkg's database against dpkg itself: this machine's own status file and update journal (real,
//! written by real dpkg), read by porthole and listed by `dpkg-query`.

use porthole_inspect::packages::dpkg::{parse_database, split_version, STATUS_PATH, UPDATES_DIR};
use porthole_testkit::run;
use std::collections::BTreeMap;

#[test]
fn status_file_matches_dpkg_query() {
    let bytes = std::fs::read(STATUS_PATH).expect("this Debian machine's dpkg status file");
    let updates: Vec<(String, Vec<u8>)> = std::fs::read_dir(UPDATES_DIR)
        .expect("dpkg's journal directory")
        .map(|e| {
            let e = e.expect("journal entry");
            let bytes = std::fs::read(e.path()).expect("read journal file");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    let parsed = parse_database(&bytes, &updates);
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let listed = run(
        "dpkg-query",
        "dpkg",
        &[
            "-W",
            "-f",
            "${db:Status-Status}|${Package}|${Version}|${Architecture}\\n",
        ],
        None,
    );
    let want: BTreeMap<String, (String, String)> = listed
        .lines()
        .filter_map(|l| l.strip_prefix("installed|"))
        .filter_map(|l| {
            let mut f = l.split('|');
            Some((
                f.next()?.to_string(),
                (f.next()?.to_string(), f.next()?.to_string()),
            ))
        })
        .collect();
    assert!(want.len() > 100, "dpkg lists only {} packages", want.len());
    let got: BTreeMap<String, (String, String)> = parsed
        .applications
        .iter()
        .map(|a| {
            let mut version = String::new();
            if a.epoch != 0 {
                version.push_str(&format!("{}:", a.epoch));
            }
            version.push_str(a.version.as_deref().unwrap_or_default());
            if let Some(release) = &a.release {
                version.push_str(&format!("-{release}"));
            }
            (
                a.name.clone(),
                (version, a.arch.clone().unwrap_or_default()),
            )
        })
        .collect();
    // Multi-arch packages (libc6:i386 beside libc6) share a name; dpkg-query lists both.
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    for (name, (version, _)) in &want {
        let (_, upstream, _) = split_version(version).expect("dpkg's own versions parse");
        assert!(!upstream.is_empty(), "{name}");
    }
}
