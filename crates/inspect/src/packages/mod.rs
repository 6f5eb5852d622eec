//! Installed applications, one module per package database format.
//!
//! Each format's parser turns the database's bytes into [`Application`]s (virt-inspector's
//! `<application>` fields) and warnings; nothing here touches the guest tree, so parsers are
//! tested and fuzzed on bytes alone.

pub mod apk;
pub mod pacman;
pub mod rpm;

use serde::Serialize;

pub mod dpkg;
pub mod windows;

/// One installed application or package, with virt-inspector's fields. Empty fields are `None`
/// (virt-inspector leaves the element out).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Application {
    pub name: String,
    /// A human name where the format has one (Windows DisplayName).
    pub display_name: Option<String>,
    /// 0 when the package has none, as virt-inspector reports it.
    pub epoch: u64,
    pub version: Option<String>,
    pub release: Option<String>,
    pub arch: Option<String>,
    pub install_path: Option<String>,
    pub publisher: Option<String>,
    pub url: Option<String>,
    pub source_package: Option<String>,
    pub summary: Option<String>,
    pub description: Option<String>,
}

/// What a package database yielded: the applications read, and what could not be read (each
/// warning names the database and, where it can, the record).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub applications: Vec<Application>,
    pub warnings: Vec<String>,
}
