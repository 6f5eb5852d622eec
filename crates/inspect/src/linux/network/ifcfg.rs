//! Red Hat's `/etc/sysconfig/network-scripts/ifcfg-<name>`: shell variables (`DEVICE`,
//! `BOOTPROTO`, `IPADDR[N]`, `PREFIX[N]`/`NETMASK[N]`, `GATEWAY`, `DNS1`..), read with
//! [`porthole_shellvars`], which never runs anything.

use super::{with_prefix, Interface};

/// Numbered variables (`IPADDR0`..., `DNS1`...) looked at per kind.
const MAX_INDEX: usize = 16;

/// Parses one ifcfg file.
pub fn parse(bytes: &[u8], source: &str, _warnings: &mut Vec<String>) -> Vec<Interface> {
    let vars = porthole_shellvars::parse(&String::from_utf8_lossy(bytes));
    let get = |k: &str| vars.get(k).filter(|v| !v.is_empty()).cloned();
    let file_name = source.rsplit('/').next().unwrap_or(source);
    let interface = get("DEVICE")
        .or_else(|| get("NAME"))
        .unwrap_or_else(|| file_name.trim_start_matches("ifcfg-").to_string());
    let method = get("BOOTPROTO").map(|p| match p.to_ascii_lowercase().as_str() {
        "dhcp" | "bootp" => "dhcp".to_string(),
        "none" | "static" => "static".to_string(),
        other => other.to_string(),
    });
    let mut addresses = Vec::new();
    for suffix in std::iter::once(String::new()).chain((0..MAX_INDEX).map(|i| i.to_string())) {
        if let Some(addr) = get(&format!("IPADDR{suffix}")) {
            let prefix = get(&format!("PREFIX{suffix}"));
            addresses.push(match prefix {
                Some(p) => format!("{addr}/{p}"),
                None => with_prefix(&addr, get(&format!("NETMASK{suffix}")).as_deref()),
            });
        }
    }
    let dns = (1..=MAX_INDEX)
        .filter_map(|i| get(&format!("DNS{i}")))
        .collect();
    vec![Interface {
        interface,
        method,
        addresses,
        gateway: get("GATEWAY"),
        dns,
        tool: "ifcfg".into(),
        source: source.to_string(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dhcp() {
        let got = parse(
            b"DEVICE=eth0\nBOOTPROTO=none\nIPADDR=198.51.100.7\nNETMASK=255.255.255.0\n\
IPADDR1=198.51.100.8\nPREFIX1=32\nGATEWAY=198.51.100.1\nDNS1=198.51.100.53\nONBOOT=yes\n",
            "/etc/sysconfig/network-scripts/ifcfg-eth0",
            &mut Vec::new(),
        );
        assert_eq!(got[0].interface, "eth0");
        assert_eq!(got[0].method.as_deref(), Some("static"));
        assert_eq!(got[0].addresses, ["198.51.100.7/24", "198.51.100.8/32"]);
        assert_eq!(got[0].dns, ["198.51.100.53"]);
        let dhcp = parse(b"BOOTPROTO=\"dhcp\"\n", "/x/ifcfg-ens3", &mut Vec::new());
        assert_eq!(
            (dhcp[0].interface.as_str(), dhcp[0].method.as_deref()),
            ("ens3", Some("dhcp"))
        );
    }
}
