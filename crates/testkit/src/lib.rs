//! Test support for porthole's storage crates, shared by their integration tests.
//!
//! - [`tools`]: run real tools (mkfs.*, sfdisk, lvm, qemu-img) with a loud failure naming the
//!   Debian package to install, cache the images they build under `<target>/test-images`, and
//!   in-memory devices for crafted, hostile structures.
//! - [`fsimage`]: a filesystem image of any kind porthole reads, from a host directory tree.
//! - [`guests`]: phony guests (VM disk sets with just enough OS) for the guest view and inspector.
//! - [`libguestfs`]: Debian's virt-inspector with its appliance made to boot here (TCG, a
//!   downloaded kernel when /boot has none), the inspector's differential reference.
//! - [`kernel`]: loop devices, mounts and lvm2 for images the kernel writes, undone on drop.
//! - [`tree`]: a reference file tree and a comparer that checks a porthole filesystem holds
//!   exactly that tree.
//!
//! Panicking is this crate's error handling: it only ever runs inside tests.
#![allow(clippy::unwrap_used)]

pub mod fsimage;
pub mod guests;
pub mod kernel;
pub mod libguestfs;
pub mod tools;
pub mod tree;
pub mod xmllint;

pub use tools::*;
pub use tree::{assert_same_tree, build_reference_tree, compare_tree, is_root, Fidelity};
