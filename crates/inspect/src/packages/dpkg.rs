//! dpkg's database, `/var/lib/dpkg/status` (Debian, Ubuntu and their derivatives).
//!
//! The file is a list of RFC 822-style stanzas separated by blank lines: `Field: value` lines,
//! continuation lines starting with a space, ` .` for an empty line inside a long description.
//! Only packages whose `Status` says `installed` are reported (a stanza also exists for
//! packages that were removed but left configuration behind), as virt-inspector does.
//!
//! dpkg does not rewrite `status` after every change: it appends each changed record to a
//! journal file in `/var/lib/dpkg/updates/` (named by number) and merges the journal into
//! `status` later. A guest shut down in between has records there that supersede `status`, so
//! they are applied in order, as dpkg itself does when it next starts.

use super::{Application, Parsed};

/// The status file's path in the guest.
pub const STATUS_PATH: &str = "/var/lib/dpkg/status";
/// The journal directory: files named by decimal number hold records that supersede `status`.
pub const UPDATES_DIR: &str = "/var/lib/dpkg/updates";
/// A real status file is a few MiB; more is refused before reading.
pub const MAX_STATUS_BYTES: u64 = 256 << 20;
/// Stanzas past this many are ignored with a warning.
pub const MAX_PACKAGES: usize = 200_000;

/// The installed packages of a status file alone.
pub fn parse_status(text: &[u8]) -> Parsed {
    parse_database(text, &[])
}

/// The installed packages of `status` with the journal files `updates` (name, contents)
/// applied in numeric order of their names; names that are not numbers are not journal files
/// (dpkg leaves `tmp.i` there) and are skipped.
pub fn parse_database(status: &[u8], updates: &[(String, Vec<u8>)]) -> Parsed {
    let mut parsed = Parsed::default();
    // (package, architecture) -> its latest record, in first-seen order.
    let mut order: Vec<(String, String)> = Vec::new();
    let mut records: std::collections::HashMap<(String, String), (String, Stanza)> =
        std::collections::HashMap::new();
    let mut journal: Vec<(u64, &String, &Vec<u8>)> = updates
        .iter()
        .filter_map(|(name, bytes)| Some((name.parse::<u64>().ok()?, name, bytes)))
        .collect();
    journal.sort_by_key(|(number, _, _)| *number);
    let sources = std::iter::once((STATUS_PATH.to_string(), status)).chain(
        journal
            .iter()
            .map(|(_, name, bytes)| (format!("{UPDATES_DIR}/{name}"), bytes.as_slice())),
    );
    for (source, bytes) in sources {
        let text = String::from_utf8_lossy(bytes);
        for (index, stanza) in stanzas(&text).enumerate() {
            let key = (
                field(&stanza, "package").unwrap_or_default().to_string(),
                field(&stanza, "architecture")
                    .unwrap_or_default()
                    .to_string(),
            );
            if !records.contains_key(&key) {
                if order.len() == MAX_PACKAGES {
                    parsed.warnings.push(format!(
                        "{source}: more than {MAX_PACKAGES} packages; the rest are ignored"
                    ));
                    break;
                }
                order.push(key.clone());
            }
            let place = format!("{source}: stanza {}", index + 1);
            records.insert(key, (place, stanza));
        }
    }
    for key in &order {
        let Some((place, stanza)) = records.get(key) else {
            continue;
        };
        match application(stanza) {
            Ok(Some(app)) => parsed.applications.push(app),
            Ok(None) => {}
            Err(why) => parsed.warnings.push(format!("{place}: {why}")),
        }
    }
    parsed
}

/// One stanza's fields, names lower-cased, continuation lines joined with `\n`.
type Stanza = Vec<(String, String)>;

fn stanzas(text: &str) -> impl Iterator<Item = Stanza> + '_ {
    text.split("\n\n")
        .map(|block| {
            let mut fields: Stanza = Vec::new();
            for line in block.lines() {
                if let Some(rest) = line.strip_prefix([' ', '\t']) {
                    if let Some((_, value)) = fields.last_mut() {
                        value.push('\n');
                        value.push_str(if rest.trim() == "." { "" } else { rest });
                    }
                } else if let Some((name, value)) = line.split_once(':') {
                    fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                }
            }
            fields
        })
        .filter(|fields| !fields.is_empty())
}

fn field<'a>(stanza: &'a Stanza, name: &str) -> Option<&'a str> {
    stanza
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The package of an installed stanza, `None` for one that is not installed.
fn application(stanza: &Stanza) -> Result<Option<Application>, String> {
    let status = field(stanza, "status").unwrap_or_default();
    if status.split_whitespace().nth(2) != Some("installed") {
        return Ok(None);
    }
    let name = field(stanza, "package").ok_or("installed package without a Package field")?;
    let version = field(stanza, "version").ok_or(format!("{name}: no Version field"))?;
    let (epoch, upstream, revision) = split_version(version)?;
    let (summary, description) = match field(stanza, "description") {
        Some(text) => match text.split_once('\n') {
            Some((first, rest)) => (Some(first.to_string()), Some(rest.trim().to_string())),
            None => (Some(text.to_string()), None),
        },
        None => (None, None),
    };
    Ok(Some(Application {
        name: name.to_string(),
        epoch,
        version: Some(upstream.to_string()),
        release: revision.map(str::to_string),
        arch: field(stanza, "architecture").map(str::to_string),
        url: field(stanza, "homepage").map(str::to_string),
        source_package: field(stanza, "source")
            .and_then(|s| s.split_whitespace().next())
            .map(str::to_string),
        summary,
        description: description.filter(|d| !d.is_empty()),
        ..Application::default()
    }))
}

/// `[epoch:]upstream[-revision]`, the revision after the last hyphen (deb-version(7)).
pub fn split_version(version: &str) -> Result<(u64, &str, Option<&str>), String> {
    let (epoch, rest) = match version.split_once(':') {
        Some((epoch, rest)) => (
            epoch
                .parse::<u64>()
                .map_err(|_| format!("version {version:?}: epoch is not a number"))?,
            rest,
        ),
        None => (0, version),
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((upstream, revision)) => (upstream, Some(revision)),
        None => (rest, None),
    };
    if upstream.is_empty() {
        return Err(format!("version {version:?} has no upstream part"));
    }
    Ok((epoch, upstream, revision))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: bash\n\
Status: install ok installed\n\
Priority: required\n\
Architecture: amd64\n\
Source: bash (5.2.15-2)\n\
Version: 5.2.15-2+b2\n\
Homepage: http://tiswww.case.edu/php/chet/bash/bashtop.html\n\
Description: GNU Bourne Again SHell\n Bash is an sh-compatible command language interpreter.\n .\n Second paragraph.\n\
\n\
Package: removed-thing\n\
Status: deinstall ok config-files\n\
Version: 1.0\n\
\n\
Package: epochal\n\
Status: install ok installed\n\
Version: 2:1.2.3\n\
Architecture: all\n\
\n\
Package: broken\n\
Status: install ok installed\n\
Version: x:1\n";

    #[test]
    fn installed_packages_with_split_versions() {
        let parsed = parse_status(STATUS.as_bytes());
        let names: Vec<_> = parsed
            .applications
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(names, ["bash", "epochal"]);
        let bash = &parsed.applications[0];
        assert_eq!(bash.epoch, 0);
        assert_eq!(bash.version.as_deref(), Some("5.2.15"));
        assert_eq!(bash.release.as_deref(), Some("2+b2"));
        assert_eq!(bash.arch.as_deref(), Some("amd64"));
        assert_eq!(bash.source_package.as_deref(), Some("bash"));
        assert_eq!(bash.summary.as_deref(), Some("GNU Bourne Again SHell"));
        assert_eq!(
            bash.description.as_deref(),
            Some("Bash is an sh-compatible command language interpreter.\n\nSecond paragraph.")
        );
        let epochal = &parsed.applications[1];
        assert_eq!((epochal.epoch, epochal.release.as_deref()), (2, None));
        assert_eq!(parsed.warnings.len(), 1, "{:?}", parsed.warnings);
        assert!(
            parsed.warnings[0].contains("epoch"),
            "{:?}",
            parsed.warnings
        );
    }

    #[test]
    fn journal_records_supersede_status_in_order() {
        let update = |name: &str, text: &str| (name.to_string(), text.as_bytes().to_vec());
        let updates = [
            update("0002", "Package: bash\nStatus: deinstall ok config-files\nVersion: 5.2.15-2+b2\nArchitecture: amd64\n"),
            update("0001", "Package: bash\nStatus: install ok installed\nVersion: 9-1\nArchitecture: amd64\n"),
            update("0010", "Package: newcomer\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n"),
            update("tmp.i", "Package: ignored\nStatus: install ok installed\nVersion: 1\n"),
        ];
        let parsed = parse_database(STATUS.as_bytes(), &updates);
        let names: Vec<_> = parsed
            .applications
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(names, ["epochal", "newcomer"]);
    }

    #[test]
    fn versions_split_at_the_last_hyphen() {
        assert_eq!(split_version("1:2.3-4-5"), Ok((1, "2.3-4", Some("5"))));
        assert_eq!(split_version("7"), Ok((0, "7", None)));
        assert!(split_version("-1").is_err());
        assert!(split_version("99999999999999999999:1").is_err());
    }

    #[test]
    fn garbage_is_survived() {
        let parsed = parse_status(b"\xff\xfe\n\n:\n \n\tStatus\nPackage:\n\n\n");
        assert!(parsed.applications.is_empty());
    }
}
