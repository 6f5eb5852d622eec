//! pacman's local database, `/var/lib/pacman/local/` (Arch Linux and its derivatives).
//!
//! One directory per installed package, named `<name>-<version>-<release>`, holding `desc`
//! (the package's metadata) and `files`. `desc` is a list of sections, each a `%KEY%` line
//! followed by one value per line up to a blank line (libalpm's `be_local.c`). The version is
//! `[epoch:]version-release`.

use super::{Application, Parsed};

/// The database directory in the guest.
pub const LOCAL_DIR: &str = "/var/lib/pacman/local";
/// A `desc` file is a few hundred bytes; more is refused before reading.
pub const MAX_DESC_BYTES: u64 = 1 << 20;
/// Package directories past this many are ignored with a warning.
pub const MAX_PACKAGES: usize = 100_000;

/// Why a `desc` file yields no package.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescError {
    #[error("no %NAME% section")]
    NoName,
    #[error("%VERSION% {0:?}: the epoch is not a number")]
    BadEpoch(String),
    #[error("%VERSION% {0:?}: no version")]
    EmptyVersion(String),
}

/// The installed packages of `entries`: (package directory name, its `desc` file).
pub fn parse_database(entries: &[(String, Vec<u8>)]) -> Parsed {
    let mut parsed = Parsed::default();
    for (dir, desc) in entries.iter().take(MAX_PACKAGES) {
        match parse_desc(desc) {
            Ok(app) => parsed.applications.push(app),
            Err(why) => parsed
                .warnings
                .push(format!("{LOCAL_DIR}/{dir}/desc: {why}")),
        }
    }
    if entries.len() > MAX_PACKAGES {
        parsed.warnings.push(format!(
            "{LOCAL_DIR}: more than {MAX_PACKAGES} packages; the rest are ignored"
        ));
    }
    parsed
}

/// One package's `desc` file.
pub fn parse_desc(bytes: &[u8]) -> Result<Application, DescError> {
    let text = String::from_utf8_lossy(bytes);
    let mut app = Application::default();
    let mut key: Option<&str> = None;
    for line in text.lines() {
        if line.is_empty() {
            key = None;
            continue;
        }
        if key.is_none() {
            if let Some(k) = line.strip_prefix('%').and_then(|l| l.strip_suffix('%')) {
                key = Some(k);
                continue;
            }
        }
        // Only the first value of a section matters for these keys.
        let value = line.trim().to_string();
        match key {
            Some("NAME") if app.name.is_empty() => app.name = value,
            Some("VERSION") if app.version.is_none() => {
                let (epoch, version, release) = split_version(&value)?;
                app.epoch = epoch;
                app.version = Some(version.to_string());
                app.release = release.map(str::to_string);
            }
            Some("ARCH") if app.arch.is_none() => app.arch = Some(value),
            Some("DESC") if app.summary.is_none() => app.summary = Some(value),
            Some("URL") if app.url.is_none() => app.url = Some(value),
            Some("PACKAGER") if app.publisher.is_none() => app.publisher = Some(value),
            Some("BASE") if app.source_package.is_none() => app.source_package = Some(value),
            _ => {}
        }
    }
    if app.name.is_empty() {
        return Err(DescError::NoName);
    }
    Ok(app)
}

/// `1:2.3-4` → (1, `2.3`, `4`); the epoch is 0 and the release absent where not given.
pub fn split_version(full: &str) -> Result<(u64, &str, Option<&str>), DescError> {
    let (epoch, rest) = match full.split_once(':') {
        Some((e, rest)) => (
            e.parse::<u64>()
                .map_err(|_| DescError::BadEpoch(full.to_string()))?,
            rest,
        ),
        None => (0, full),
    };
    let (version, release) = match rest.rsplit_once('-') {
        Some((v, r)) => (v, Some(r)),
        None => (rest, None),
    };
    if version.is_empty() {
        return Err(DescError::EmptyVersion(full.to_string()));
    }
    Ok((epoch, version, release))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_desc() {
        let desc = b"%NAME%\nzlib\n\n%VERSION%\n1:1.3-2\n\n%BASE%\nzlib\n\n%DESC%\n\
Compression library\n\n%URL%\nhttps://www.zlib.net/\n\n%ARCH%\nx86_64\n\n%LICENSE%\nZlib\nother\n\n";
        let app = parse_desc(desc).unwrap();
        assert_eq!(app.name, "zlib");
        assert_eq!(app.epoch, 1);
        assert_eq!(app.version.as_deref(), Some("1.3"));
        assert_eq!(app.release.as_deref(), Some("2"));
        assert_eq!(app.arch.as_deref(), Some("x86_64"));
        assert_eq!(app.summary.as_deref(), Some("Compression library"));
        assert_eq!(app.url.as_deref(), Some("https://www.zlib.net/"));
        assert_eq!(app.source_package.as_deref(), Some("zlib"));
    }

    #[test]
    fn odd_input_is_warnings() {
        let entries = vec![
            (
                "a-1-1".to_string(),
                b"%NAME%\na\n\n%VERSION%\nx:1-1\n".to_vec(),
            ),
            ("junk".to_string(), b"\x00\xff%%\n".to_vec()),
            ("b-2-1".to_string(), b"%NAME%\nb\n%VERSION%\n2-1\n".to_vec()),
        ];
        let p = parse_database(&entries);
        assert_eq!(p.applications.len(), 1);
        assert_eq!(p.applications[0].name, "b");
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
    }
}
