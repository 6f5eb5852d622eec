//! Offline inspection: what is inside a VM's disks, read without booting, mounting or root.
//!
//! Built on [`porthole_guest`] (images → volumes → filesystems → one guest tree per OS root),
//! this crate derives the facts virt-inspector reports, and more an operator of a fleet needs:
//!
//! - [`packages`]: installed applications from each package database format (dpkg, rpm in its
//!   three database formats, apk, pacman, Windows Uninstall keys), each a parser of untrusted
//!   bytes with a fuzz entry point; a damaged database is a warning, never a failed inspection.
//! - [`linux`]: the distribution and architecture, and the configuration an operator audits:
//!   enabled services, accounts and sudo rules, network configuration, timezone, kernels,
//!   SELinux/AppArmor, cloud-init and guest agents.
//! - [`windows`]: a Windows root's version, architecture, hostname, control set and drive
//!   letters, from its registry hives and `System32\cmd.exe`.
//! - [`output`]: the report in other tools' formats (virt-inspector's XML).
//!
//! Every parser here reads a guest's files, which are hostile input: sizes are capped before
//! reading, every offset is checked, and each parser returns what it could read plus warnings.

pub mod fuzzing;
mod inspect;
pub mod linux;
pub mod output;
pub mod packages;
pub mod report;
pub mod windows;

pub use inspect::{inspect, Options};
pub use report::Report;
