//! Network: interfaces with their addresses, and routes.

use super::Session;
use crate::output::table;
use anyhow::Result;
use porthole_client::commands::{self as cmd, NetworkInterface, NetworkRoute};

impl Session {
    /// One row per address, like `virsh domifaddr --source agent`.
    pub(super) fn ifaddr(&mut self) -> Result<()> {
        self.show(
            cmd::GUEST_NETWORK_GET_INTERFACES.name,
            |interfaces: Vec<NetworkInterface>| {
                let mut rows = Vec::new();
                for iface in interfaces {
                    let mac = iface.hardware_address.unwrap_or_else(|| "-".into());
                    let addresses = iface.ip_addresses.unwrap_or_default();
                    if addresses.is_empty() {
                        rows.push(vec![
                            iface.name.clone(),
                            mac.clone(),
                            "-".into(),
                            "-".into(),
                        ]);
                    }
                    for a in addresses {
                        rows.push(vec![
                            iface.name.clone(),
                            mac.clone(),
                            a.ip_address_type,
                            format!("{}/{}", a.ip_address, a.prefix),
                        ]);
                    }
                }
                table(&["NAME", "MAC", "PROTOCOL", "ADDRESS"], &rows)
            },
        )
    }

    pub(super) fn routes(&mut self) -> Result<()> {
        self.show(
            cmd::GUEST_NETWORK_GET_ROUTE.name,
            |routes: Vec<NetworkRoute>| {
                let rows: Vec<Vec<String>> = routes
                    .into_iter()
                    .map(|r| {
                        let destination = match (&r.mask, &r.desprefixlen) {
                            (Some(mask), _) => format!("{}/{}", r.destination, prefix_len(mask)),
                            (None, Some(len)) => format!("{}/{}", r.destination, len),
                            (None, None) => r.destination.clone(),
                        };
                        let gateway = r.gateway.or(r.nexthop).unwrap_or_else(|| "-".into());
                        vec![
                            format!("ipv{}", r.version),
                            destination,
                            gateway,
                            r.iface,
                            r.metric.to_string(),
                        ]
                    })
                    .collect();
                table(
                    &["PROTOCOL", "DESTINATION", "GATEWAY", "IFACE", "METRIC"],
                    &rows,
                )
            },
        )
    }
}

/// `255.255.255.0` as `24`; a mask that is not a run of ones stays as written.
fn prefix_len(mask: &str) -> String {
    match mask.parse::<std::net::Ipv4Addr>() {
        Ok(addr) => {
            let bits = u32::from(addr);
            if bits.leading_ones() + bits.trailing_zeros() == 32 {
                bits.leading_ones().to_string()
            } else {
                mask.to_string()
            }
        }
        Err(_) => mask.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(prefix_len("255.255.255.0"), "24");
        assert_eq!(prefix_len("0.0.0.0"), "0");
        assert_eq!(prefix_len("255.0.255.0"), "255.0.255.0");
    }
}
