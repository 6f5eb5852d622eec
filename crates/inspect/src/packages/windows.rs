//! Windows applications: the `Uninstall` keys of the SOFTWARE hive, native
//! (`Microsoft\Windows\CurrentVersion\Uninstall`) and 32-bit on 64-bit Windows
//! (`WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall`).
//!
//! As virt-inspector: each subkey with a string `DisplayName` is an application named by the
//! key (the display name depends on the language, the key does not); `DisplayVersion`,
//! `InstallLocation`, `Publisher`, `URLInfoAbout` and `Comments` fill the other fields.
//! Subkeys without a `DisplayName` (updates, components) are not applications.

use super::{Application, Parsed};
use crate::windows::hive::{Hive, HiveError, Key};

/// Where the application lists are, relative to the SOFTWARE hive's root.
pub const UNINSTALL_KEYS: [&str; 2] = [
    r"Microsoft\Windows\CurrentVersion\Uninstall",
    r"WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall",
];

/// The applications of a SOFTWARE hive's bytes, native ones first.
pub fn parse_software(software: &[u8]) -> Parsed {
    let mut parsed = Parsed::default();
    let hive = match Hive::new(software) {
        Ok(hive) => hive,
        Err(e) => {
            parsed.warnings.push(format!("SOFTWARE: {e}"));
            return parsed;
        }
    };
    parsed
        .warnings
        .extend(hive.warnings().iter().map(|w| format!("SOFTWARE: {w}")));
    for path in UNINSTALL_KEYS {
        match hive.open(path) {
            Ok(Some(key)) => read_list(&key, path, &mut parsed),
            Ok(None) => {}
            Err(e) => parsed.warnings.push(format!("SOFTWARE: {path}: {e}")),
        }
    }
    parsed
}

fn read_list(uninstall: &Key<'_, '_>, path: &str, parsed: &mut Parsed) {
    let children = match uninstall.subkeys() {
        Ok(children) => children,
        Err(e) => {
            parsed.warnings.push(format!("SOFTWARE: {path}: {e}"));
            return;
        }
    };
    for child in children {
        match child {
            Ok(key) => {
                let place = format!("{path}\\{}", key.name());
                let mut warn =
                    |e: HiveError| parsed.warnings.push(format!("SOFTWARE: {place}: {e}"));
                if let Some(app) = application(&key, &mut warn) {
                    parsed.applications.push(app);
                }
            }
            Err(e) => parsed.warnings.push(format!("SOFTWARE: {path}: {e}")),
        }
    }
}

/// The application an Uninstall subkey describes, `None` without a `DisplayName`. A value
/// that cannot be read is a warning and an empty field.
fn application(key: &Key<'_, '_>, warn: &mut impl FnMut(HiveError)) -> Option<Application> {
    let mut get = |name: &str| match key.value(name) {
        Ok(value) => value?.string().filter(|s| !s.is_empty()),
        Err(e) => {
            warn(e);
            None
        }
    };
    let display_name = get("DisplayName")?;
    Some(Application {
        name: key.name().to_string(),
        display_name: Some(display_name),
        version: get("DisplayVersion"),
        install_path: get("InstallLocation"),
        publisher: get("Publisher"),
        url: get("URLInfoAbout"),
        description: get("Comments"),
        ..Application::default()
    })
}
