//! Facts about a Windows root, read from its registry hives as virt-inspector reads them.
//!
//! The caller reads the hive files from the guest (`/Windows/System32/config/SOFTWARE` and
//! `SYSTEM`, at most [`hive::MAX_HIVE_BYTES`]) and hands their bytes here:
//!
//! - [`hive`]: a bounded, read-only reader of the regf format (keys, values, big data);
//! - [`version`]: product name, version, build, installation type and the osinfo id, from
//!   SOFTWARE's `Microsoft\Windows NT\CurrentVersion`;
//! - [`system`]: control set, hostname and drive letters from SYSTEM, and the mapping of drive
//!   letters onto the guest's partitions;
//! - [`pe`]: the architecture, from the PE header of `System32\cmd.exe`;
//! - `guest`: all of these read from a Windows root's filesystem into the report.
//!
//! Installed applications (the Uninstall keys) are in [`crate::packages::windows`].

pub(crate) mod guest;
pub mod hive;
pub mod pe;
pub mod system;
pub mod version;

pub use system::{
    map_drive_letters, read_system, DriveLetter, PartitionInfo, PartitionRef, SystemFacts,
};
pub use version::{read_software, WindowsVersion};

/// What a hive yielded: the facts read, and what could not be read (each warning names the
/// hive, the key and, where it can, the byte offset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Read<T> {
    pub facts: T,
    pub warnings: Vec<String>,
}
