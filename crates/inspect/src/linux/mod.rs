//! Facts about a Linux root: distribution ([`distro`]), architecture ([`elf`]), enabled
//! services ([`services`]), users, groups and sudo rules ([`accounts`]), network configuration
//! ([`network`]) and system settings ([`system`]: timezone, kernels, SELinux, AppArmor,
//! cloud-init, guest agents).
//!
//! Each module has parsers over bytes (unit-tested and fuzzed alone) and a reader over a
//! [`GuestView`] that bounds every file size and directory count and turns anything odd into a
//! warning, reading the rest.

pub mod accounts;
pub mod distro;
pub mod elf;
pub mod network;
pub mod services;
pub mod system;

use porthole_fs::DirEntry;
use porthole_guest::GuestView;

/// Directory entries read per directory at most; more are ignored with a warning.
pub const MAX_DIR_ENTRIES: usize = 4096;

/// The file at `path`, or `None` when it does not exist; any other failure (too big, damaged,
/// a symlink loop) is a warning.
pub(crate) fn read_optional(
    view: &GuestView,
    path: &str,
    limit: u64,
    warnings: &mut Vec<String>,
) -> Option<Vec<u8>> {
    match view.read_file(path.as_bytes(), limit) {
        Ok(bytes) => Some(bytes),
        Err(porthole_guest::Error::NotFound { .. }) => None,
        Err(e) => {
            warnings.push(format!("{path}: {e}"));
            None
        }
    }
}

/// The entries of directory `path` sorted by name, at most [`MAX_DIR_ENTRIES`]; a missing
/// directory is empty, any other failure a warning.
pub(crate) fn list_dir(view: &GuestView, path: &str, warnings: &mut Vec<String>) -> Vec<DirEntry> {
    match view.read_dir(path.as_bytes()) {
        Ok(mut entries) => {
            if entries.len() > MAX_DIR_ENTRIES {
                warnings.push(format!(
                    "{path}: more than {MAX_DIR_ENTRIES} entries; the rest are ignored"
                ));
            }
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            entries.truncate(MAX_DIR_ENTRIES);
            entries
        }
        Err(porthole_guest::Error::NotFound { .. })
        | Err(porthole_guest::Error::NotADirectory { .. }) => Vec::new(),
        Err(e) => {
            warnings.push(format!("{path}: {e}"));
            Vec::new()
        }
    }
}

/// A directory entry's name as text (guest names are bytes).
pub(crate) fn name_of(entry: &DirEntry) -> String {
    String::from_utf8_lossy(&entry.name).into_owned()
}
