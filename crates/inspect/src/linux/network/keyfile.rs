//! Ini-style files: NetworkManager's keyfiles (`/etc/NetworkManager/system-connections/
//! *.nmconnection`) and systemd-networkd's `/etc/systemd/network/*.network`.
//!
//! Both are `[Section]` headers and `Key=value` lines with `#`/`;` comments; networkd repeats
//! keys (`Address=` twice) and sections (`[Address]`), which the common ini crates fold into
//! one value, so the few lines of splitting are written here and keep every entry in order.

use super::Interface;

/// Lines read per file at most.
pub const MAX_LINES: usize = 100_000;

/// (section, key, value) for every assignment, in file order.
pub fn entries(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().take(MAX_LINES) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// A NetworkManager keyfile: `[connection]` `id`/`interface-name`, `[ipv4]`/`[ipv6]`
/// `method` (`auto` → dhcp, `manual` → static), `address1=addr/prefix[,gateway]`,
/// `gateway`, `dns=a;b;`.
pub fn parse_networkmanager(bytes: &[u8], source: &str, _w: &mut Vec<String>) -> Vec<Interface> {
    let mut iface = Interface {
        tool: "networkmanager".into(),
        source: source.to_string(),
        ..Interface::default()
    };
    let mut id = None;
    for (section, key, value) in entries(&String::from_utf8_lossy(bytes)) {
        match (section.as_str(), key.as_str()) {
            ("connection", "id") => id = Some(value),
            ("connection", "interface-name") => iface.interface = value,
            ("ipv4" | "ipv6", "method") => {
                let method = match value.as_str() {
                    "auto" | "dhcp" => "dhcp",
                    "manual" => "static",
                    other => other,
                };
                // IPv4's method wins; IPv6's fills in when IPv4 says nothing or is off.
                if iface.method.is_none() || iface.method.as_deref() == Some("disabled") {
                    iface.method = Some(method.to_string());
                }
            }
            ("ipv4" | "ipv6", k) if k.starts_with("address") => {
                let mut parts = value.split(',');
                iface
                    .addresses
                    .extend(parts.next().map(|a| a.trim().to_string()));
                if let Some(gw) = parts.next() {
                    iface.gateway.get_or_insert_with(|| gw.trim().to_string());
                }
            }
            ("ipv4" | "ipv6", "gateway") => {
                iface.gateway.get_or_insert(value);
            }
            ("ipv4" | "ipv6", "dns") => iface.dns.extend(
                value
                    .split([';', ','])
                    .filter(|d| !d.trim().is_empty())
                    .map(|d| d.trim().to_string()),
            ),
            _ => {}
        }
    }
    if iface.interface.is_empty() {
        iface.interface = id.unwrap_or_default();
    }
    vec![iface]
}

/// A systemd-networkd `.network` file: `[Match] Name=`/`MACAddress=`, `[Network] DHCP=`,
/// `Address=`, `Gateway=`, `DNS=`, `[Address] Address=`, `[Route] Gateway=`.
pub fn parse_networkd(bytes: &[u8], source: &str, _w: &mut Vec<String>) -> Vec<Interface> {
    let mut iface = Interface {
        tool: "networkd".into(),
        source: source.to_string(),
        ..Interface::default()
    };
    let mut matches = Vec::new();
    for (section, key, value) in entries(&String::from_utf8_lossy(bytes)) {
        match (section.as_str(), key.as_str()) {
            ("Match", "Name") => matches.push(value),
            ("Match", "MACAddress") => matches.push(format!("mac={value}")),
            ("Network", "DHCP") => {
                if matches!(value.as_str(), "yes" | "true" | "ipv4" | "ipv6" | "1") {
                    iface.method = Some("dhcp".into());
                }
            }
            ("Network" | "Address", "Address") => iface.addresses.push(value),
            ("Network" | "Route", "Gateway") => {
                iface.gateway.get_or_insert(value);
            }
            ("Network", "DNS") => iface
                .dns
                .extend(value.split_whitespace().map(str::to_string)),
            _ => {}
        }
    }
    if iface.method.is_none() && !iface.addresses.is_empty() {
        iface.method = Some("static".into());
    }
    iface.interface = matches.join(" ");
    vec![iface]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networkmanager() {
        let got = parse_networkmanager(
            b"[connection]\nid=Wired 1\ntype=ethernet\ninterface-name=enp1s0\n\n[ipv4]\n\
method=manual\naddress1=203.0.113.5/24,203.0.113.1\ndns=203.0.113.53;8.8.8.8;\n\n[ipv6]\nmethod=auto\n",
            "/etc/NetworkManager/system-connections/w.nmconnection",
            &mut Vec::new(),
        );
        let i = &got[0];
        assert_eq!(i.interface, "enp1s0");
        assert_eq!(i.method.as_deref(), Some("static"));
        assert_eq!(i.addresses, ["203.0.113.5/24"]);
        assert_eq!(i.gateway.as_deref(), Some("203.0.113.1"));
        assert_eq!(i.dns, ["203.0.113.53", "8.8.8.8"]);
    }

    #[test]
    fn networkd() {
        let got = parse_networkd(
            b"[Match]\nName=en*\n\n[Network]\nAddress=192.0.2.4/24\nGateway=192.0.2.1\nDNS=1.1.1.1 9.9.9.9\n\
[Address]\nAddress=192.0.2.5/24\n",
            "/etc/systemd/network/10-en.network",
            &mut Vec::new(),
        );
        let i = &got[0];
        assert_eq!(i.interface, "en*");
        assert_eq!(i.method.as_deref(), Some("static"));
        assert_eq!(i.addresses, ["192.0.2.4/24", "192.0.2.5/24"]);
        assert_eq!(i.dns.len(), 2);
        let dhcp = parse_networkd(
            b"[Match]\nName=eth0\n[Network]\nDHCP=yes\n",
            "x",
            &mut Vec::new(),
        );
        assert_eq!(dhcp[0].method.as_deref(), Some("dhcp"));
    }
}
