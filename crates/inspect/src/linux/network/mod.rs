//! Network configuration, one normalised list from whichever tools the guest configures:
//! netplan ([`netplan`]), ifupdown ([`ifupdown`]), NetworkManager keyfiles and
//! systemd-networkd ([`keyfile`], both ini files), Red Hat's `ifcfg-*` ([`ifcfg`]).
//!
//! What is reported is what the files say, not what a running guest would have: a file
//! NetworkManager ignores still shows up, marked with its tool and source file.

pub mod ifcfg;
pub mod ifupdown;
pub mod keyfile;
pub mod netplan;

use porthole_fs::FileType;
use porthole_guest::GuestView;
use serde::Serialize;

use super::{list_dir, name_of, read_optional};

/// A network configuration file is a few KiB; more is refused before reading.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Interfaces reported per file at most.
pub const MAX_PER_FILE: usize = 1024;
/// Interfaces reported in all at most; the files past that are not read.
pub const MAX_INTERFACES: usize = 4096;

/// One configured interface (or connection, or match).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Interface {
    /// The interface name, or what it matches (`match:mac=52:54:00:..`, `en*`), or the
    /// connection's id where nothing names an interface.
    pub interface: String,
    /// `dhcp`, `static`, `manual`, `loopback`, `disabled`, ... as the tool says it,
    /// normalised: DHCP of either family is `dhcp`, fixed addresses are `static`.
    pub method: Option<String>,
    /// Addresses with their prefix length where given (`192.0.2.10/24`).
    pub addresses: Vec<String>,
    pub gateway: Option<String>,
    pub dns: Vec<String>,
    /// `netplan`, `ifupdown`, `networkmanager`, `networkd` or `ifcfg`.
    pub tool: String,
    /// The guest file it came from.
    pub source: String,
}

/// The network configuration of a guest.
pub fn read(view: &GuestView, warnings: &mut Vec<String>) -> Vec<Interface> {
    let mut out = Vec::new();
    let mut each =
        |dir: &str, keep: fn(&str) -> bool, parse: Parser, warnings: &mut Vec<String>| {
            for entry in list_dir(view, dir, warnings) {
                let name = name_of(&entry);
                if entry.file_type == FileType::Directory || !keep(&name) {
                    continue;
                }
                let path = format!("{dir}/{name}");
                if let Some(bytes) = read_optional(view, &path, MAX_FILE_BYTES, warnings) {
                    let mut found = parse(&bytes, &path, warnings);
                    found.truncate(MAX_PER_FILE);
                    out.extend(found);
                }
            }
        };
    each(
        "/etc/netplan",
        |n| n.ends_with(".yaml"),
        netplan::parse,
        warnings,
    );
    each(
        "/etc/network",
        |n| n == "interfaces",
        ifupdown::parse,
        warnings,
    );
    each(
        "/etc/network/interfaces.d",
        |n| !n.starts_with('.'),
        ifupdown::parse,
        warnings,
    );
    each(
        "/etc/NetworkManager/system-connections",
        |n| n.ends_with(".nmconnection"),
        keyfile::parse_networkmanager,
        warnings,
    );
    each(
        "/etc/systemd/network",
        |n| n.ends_with(".network"),
        keyfile::parse_networkd,
        warnings,
    );
    each(
        "/etc/sysconfig/network-scripts",
        |n| n.starts_with("ifcfg-") && !n.ends_with("~"),
        ifcfg::parse,
        warnings,
    );
    out
}

/// A parser of one file: its bytes and guest path, warnings out.
pub type Parser = fn(&[u8], &str, &mut Vec<String>) -> Vec<Interface>;

/// `255.255.255.0` → 24; `None` for anything that is not a contiguous dotted-quad mask.
pub fn netmask_prefix(mask: &str) -> Option<u32> {
    let addr: std::net::Ipv4Addr = mask.trim().parse().ok()?;
    let bits = u32::from(addr);
    (bits.leading_ones() + bits.trailing_zeros() == 32 || bits == 0).then(|| bits.leading_ones())
}

/// `address` with a prefix from `netmask` when it has none.
pub fn with_prefix(address: &str, netmask: Option<&str>) -> String {
    match netmask.and_then(netmask_prefix) {
        Some(prefix) if !address.contains('/') => format!("{address}/{prefix}"),
        _ => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(netmask_prefix("255.255.255.0"), Some(24));
        assert_eq!(netmask_prefix("255.255.0.255"), None);
        assert_eq!(netmask_prefix("0.0.0.0"), Some(0));
        assert_eq!(netmask_prefix("junk"), None);
        assert_eq!(with_prefix("10.0.0.1", Some("255.0.0.0")), "10.0.0.1/8");
        assert_eq!(with_prefix("10.0.0.1/16", Some("255.0.0.0")), "10.0.0.1/16");
    }
}
