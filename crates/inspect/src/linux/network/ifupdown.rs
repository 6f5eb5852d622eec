//! ifupdown's `/etc/network/interfaces` (and `interfaces.d/*`): `iface <name> <family>
//! <method>` stanzas followed by option lines (`address`, `netmask`, `gateway`,
//! `dns-nameservers`), as interfaces(5) describes.

use super::{with_prefix, Interface};

/// Lines read per file at most.
pub const MAX_LINES: usize = 100_000;

/// Parses one interfaces file.
pub fn parse(bytes: &[u8], source: &str, warnings: &mut Vec<String>) -> Vec<Interface> {
    let text = String::from_utf8_lossy(bytes);
    let mut out: Vec<Interface> = Vec::new();
    let mut netmask: Option<String> = None;
    let mut current: Option<Interface> = None;
    let finish = |current: &mut Option<Interface>,
                  netmask: &mut Option<String>,
                  out: &mut Vec<Interface>| {
        if let Some(mut iface) = current.take() {
            if let Some(first) = iface.addresses.first_mut() {
                *first = with_prefix(first, netmask.as_deref());
            }
            out.push(iface);
        }
        *netmask = None;
    };
    for (index, line) in text.lines().enumerate().take(MAX_LINES) {
        let line = line.split('#').next().unwrap_or_default().trim();
        let mut words = line.split_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        let rest: Vec<&str> = words.collect();
        match keyword {
            "iface" => {
                finish(&mut current, &mut netmask, &mut out);
                let [name, _family, method, ..] = rest.as_slice() else {
                    warnings.push(format!("{source}: line {}: short iface line", index + 1));
                    continue;
                };
                let method = match *method {
                    "dhcp" | "auto" => "dhcp",
                    m => m,
                };
                current = Some(Interface {
                    interface: name.to_string(),
                    method: Some(method.to_string()),
                    tool: "ifupdown".into(),
                    source: source.to_string(),
                    ..Interface::default()
                });
            }
            // Stanzas that end an iface stanza without starting one.
            "auto" | "allow-hotplug" | "mapping" | "source" | "source-directory" | "rename"
            | "no-auto-down" | "no-scripts" => finish(&mut current, &mut netmask, &mut out),
            _ => {
                let Some(iface) = current.as_mut() else {
                    continue;
                };
                let value = rest.first().map(|v| v.to_string());
                match keyword {
                    "address" => iface.addresses.extend(value),
                    "netmask" => netmask = value,
                    "gateway" => iface.gateway = iface.gateway.take().or(value),
                    "dns-nameservers" => iface.dns.extend(rest.iter().map(|v| v.to_string())),
                    _ => {}
                }
            }
        }
    }
    finish(&mut current, &mut netmask, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanzas() {
        let text = b"# comment\nsource /etc/network/interfaces.d/*\nauto lo\niface lo inet loopback\n\n\
allow-hotplug ens3\niface ens3 inet static\n  address 192.0.2.10\n  netmask 255.255.255.0\n\
  gateway 192.0.2.1\n  dns-nameservers 192.0.2.53 9.9.9.9\niface ens3 inet6 dhcp\niface\nauto ens4\n";
        let mut w = Vec::new();
        let got = parse(text, "/etc/network/interfaces", &mut w);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].method.as_deref(), Some("loopback"));
        let ens3 = &got[1];
        assert_eq!(ens3.addresses, ["192.0.2.10/24"]);
        assert_eq!(ens3.gateway.as_deref(), Some("192.0.2.1"));
        assert_eq!(ens3.dns, ["192.0.2.53", "9.9.9.9"]);
        assert_eq!(got[2].method.as_deref(), Some("dhcp"));
    }
}
