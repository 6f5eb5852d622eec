//! Facts about a Linux root: distribution ([`distro`]), architecture ([`elf`]).

pub mod distro;
pub mod elf;
