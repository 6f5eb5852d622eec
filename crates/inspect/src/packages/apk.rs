//! apk's database, `/lib/apk/db/installed` (Alpine Linux).
//!
//! The file is one stanza per installed package, stanzas separated by blank lines, each line a
//! one-letter field, a colon and the value (apk-tools' "installed database" format, documented in
//! apk-tools' `doc/apk-v2.5.scd`): `P:` name, `V:` version, `A:` arch, `T:` description,
//! `U:` URL, `L:` licence, `o:` origin (the source package), `m:` maintainer, and many per-file
//! lines (`F:`, `R:`, `Z:`, `a:`, `M:`) that say nothing about the package itself.
//!
//! An apk version is `<upstream>-r<N>`; virt-inspector reports the upstream part as version and
//! `rN` as release, and so does porthole.

use super::{Application, Parsed};

/// The database's path in the guest.
pub const INSTALLED_PATH: &str = "/lib/apk/db/installed";
/// A real database is a few MiB (it lists every file); more is refused before reading.
pub const MAX_INSTALLED_BYTES: u64 = 256 << 20;
/// Stanzas past this many are ignored with a warning.
pub const MAX_PACKAGES: usize = 200_000;

/// The installed packages of a `/lib/apk/db/installed` file.
pub fn parse_installed(bytes: &[u8]) -> Parsed {
    let text = String::from_utf8_lossy(bytes);
    let mut parsed = Parsed::default();
    let mut app = Application::default();
    let mut stanza = 1usize;
    let mut line_no = 0usize;
    for line in text.lines() {
        line_no += 1;
        if line.trim().is_empty() {
            if app != Application::default() {
                finish(&mut app, stanza, &mut parsed);
                stanza += 1;
            }
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            parsed.warnings.push(format!(
                "{INSTALLED_PATH}: line {line_no}: not a `X:value` line"
            ));
            continue;
        };
        let value = value.trim();
        let some = || (!value.is_empty()).then(|| value.to_string());
        match key {
            "P" => app.name = value.to_string(),
            "V" => {
                let (version, release) = split_version(value);
                app.version = (!version.is_empty()).then(|| version.to_string());
                app.release = release.map(str::to_string);
            }
            "A" => app.arch = some(),
            "T" => app.summary = some(),
            "U" => app.url = some(),
            "o" => app.source_package = some(),
            "m" => app.publisher = some(),
            _ => {}
        }
    }
    finish(&mut app, stanza, &mut parsed);
    parsed
}

/// Ends a stanza: keeps its package, or says why not.
fn finish(app: &mut Application, stanza: usize, parsed: &mut Parsed) {
    let done = std::mem::take(app);
    if done == Application::default() {
        return;
    }
    if done.name.is_empty() {
        parsed.warnings.push(format!(
            "{INSTALLED_PATH}: stanza {stanza}: no package name (P:)"
        ));
    } else if parsed.applications.len() < MAX_PACKAGES {
        parsed.applications.push(done);
    } else {
        let full =
            format!("{INSTALLED_PATH}: more than {MAX_PACKAGES} packages; the rest are ignored");
        if parsed.warnings.last() != Some(&full) {
            parsed.warnings.push(full);
        }
    }
}

/// `1.2.3-r4` → (`1.2.3`, `r4`); a version without an `-rN` suffix has no release.
pub fn split_version(version: &str) -> (&str, Option<&str>) {
    match version.rsplit_once('-') {
        Some((upstream, release))
            if release.len() > 1
                && release.starts_with('r')
                && release[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            (upstream, Some(release))
        }
        _ => (version, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nS:383304\nI:622592\n\
T:the musl c library (libc) implementation\nU:https://musl.libc.org/\nL:MIT\no:musl\n\
m:Timo Ter\xc3\xa4s <timo.teras@iki.fi>\nt:1700000000\nc:abc\nF:lib\nR:libc.musl-x86_64.so.1\n\
a:0:0:777\nZ:Q1xyz=\n\nP:busybox\nV:1.36.1\nA:x86_64\nT:Size optimized toolbox\no:busybox\n\n\n";

    #[test]
    fn reads_packages() {
        let p = parse_installed(SAMPLE);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(p.applications.len(), 2);
        let musl = &p.applications[0];
        assert_eq!(musl.name, "musl");
        assert_eq!(musl.version.as_deref(), Some("1.2.4"));
        assert_eq!(musl.release.as_deref(), Some("r2"));
        assert_eq!(musl.arch.as_deref(), Some("x86_64"));
        assert_eq!(musl.url.as_deref(), Some("https://musl.libc.org/"));
        assert_eq!(musl.source_package.as_deref(), Some("musl"));
        assert_eq!(
            musl.summary.as_deref(),
            Some("the musl c library (libc) implementation")
        );
        assert_eq!(p.applications[1].release, None);
        assert_eq!(p.applications[1].version.as_deref(), Some("1.36.1"));
    }

    #[test]
    fn odd_input_is_warnings() {
        let p = parse_installed(b"V:1-r1\nA:x\n\njunk line\nP:ok\n\x00\xff\n");
        assert_eq!(p.applications.len(), 1);
        assert_eq!(p.warnings.len(), 3, "{:?}", p.warnings);
        assert_eq!(split_version("1.0-rc1"), ("1.0-rc1", None));
        assert_eq!(split_version("2-r"), ("2-r", None));
    }
}
