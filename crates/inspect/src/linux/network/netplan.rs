//! netplan's `/etc/netplan/*.yaml` (Ubuntu): `network:` holds device kinds (`ethernets`,
//! `bonds`, `bridges`, `vlans`, `wifis`), each a map of device ids to settings: `match`,
//! `dhcp4`/`dhcp6`, `addresses`, `gateway4`/`gateway6`, `routes` (`to: default`, `via`),
//! `nameservers: {addresses}`.
//!
//! YAML is parsed with `serde_yaml_ng` (the maintained fork of serde_yaml, over libyaml's Rust
//! port, which limits nesting depth and alias expansion); files are size-capped before.

use serde_yaml_ng::Value;

use super::{Interface, MAX_PER_FILE};

/// The device kinds netplan configures.
pub const KINDS: [&str; 6] = ["ethernets", "bonds", "bridges", "vlans", "wifis", "tunnels"];

/// Parses one netplan file.
pub fn parse(bytes: &[u8], source: &str, warnings: &mut Vec<String>) -> Vec<Interface> {
    let doc: Value = match serde_yaml_ng::from_slice(bytes) {
        Ok(doc) => doc,
        Err(e) => {
            warnings.push(format!("{source}: {e}"));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    let Some(network) = doc.get("network") else {
        return out;
    };
    for kind in KINDS {
        let Some(Value::Mapping(devices)) = network.get(kind) else {
            continue;
        };
        for (id, settings) in devices.iter().take(MAX_PER_FILE) {
            out.push(device(&text(id).unwrap_or_default(), settings, source));
        }
    }
    out
}

fn device(id: &str, s: &Value, source: &str) -> Interface {
    let mut iface = Interface {
        interface: id.to_string(),
        tool: "netplan".into(),
        source: source.to_string(),
        ..Interface::default()
    };
    if let Some(m) = s.get("match") {
        let mut parts = Vec::new();
        if let Some(name) = m.get("name").and_then(text) {
            parts.push(name);
        }
        if let Some(mac) = m.get("macaddress").and_then(text) {
            parts.push(format!("mac={mac}"));
        }
        if !parts.is_empty() {
            iface.interface = format!("{id} (match {})", parts.join(" "));
        }
    }
    if ["dhcp4", "dhcp6"]
        .iter()
        .any(|k| s.get(k).is_some_and(truthy))
    {
        iface.method = Some("dhcp".into());
    }
    iface.addresses = list(s.get("addresses"));
    iface.gateway = s
        .get("gateway4")
        .or_else(|| s.get("gateway6"))
        .and_then(text);
    if let Some(Value::Sequence(routes)) = s.get("routes") {
        for route in routes.iter().take(MAX_PER_FILE) {
            let to = route.get("to").and_then(text).unwrap_or_default();
            if iface.gateway.is_none() && matches!(to.as_str(), "default" | "0.0.0.0/0" | "::/0") {
                iface.gateway = route.get("via").and_then(text);
            }
        }
    }
    iface.dns = list(s.get("nameservers").and_then(|n| n.get("addresses")));
    if iface.method.is_none() && !iface.addresses.is_empty() {
        iface.method = Some("static".into());
    }
    iface
}

/// A scalar as text (netplan writes `dhcp4: yes`, `true`, and bare numbers).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.as_str(), "yes" | "true" | "on" | "y"),
        _ => false,
    }
}

/// A sequence of scalars (or of single-key maps, as netplan allows for addresses with
/// options: `- 192.0.2.5/24: {lifetime: 0}`).
fn list(v: Option<&Value>) -> Vec<String> {
    let Some(Value::Sequence(items)) = v else {
        return Vec::new();
    };
    items
        .iter()
        .take(MAX_PER_FILE)
        .filter_map(|item| match item {
            Value::Mapping(m) => m.keys().next().and_then(text),
            other => text(other),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernets() {
        let yaml = br#"network:
  version: 2
  renderer: networkd
  ethernets:
    ens3:
      dhcp4: true
    lan:
      match:
        macaddress: "52:54:00:12:34:56"
      addresses: [192.0.2.10/24, "2001:db8::10/64"]
      routes:
        - to: default
          via: 192.0.2.1
      nameservers:
        addresses: [192.0.2.53]
"#;
        let mut w = Vec::new();
        let got = parse(yaml, "/etc/netplan/50.yaml", &mut w);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].method.as_deref(), Some("dhcp"));
        let lan = &got[1];
        assert_eq!(lan.interface, "lan (match mac=52:54:00:12:34:56)");
        assert_eq!(lan.method.as_deref(), Some("static"));
        assert_eq!(lan.addresses, ["192.0.2.10/24", "2001:db8::10/64"]);
        assert_eq!(lan.gateway.as_deref(), Some("192.0.2.1"));
        assert_eq!(lan.dns, ["192.0.2.53"]);
    }

    #[test]
    fn junk_is_a_warning() {
        let mut w = Vec::new();
        assert!(parse(b"network: [\x00\xff", "f", &mut w).is_empty());
        assert_eq!(w.len(), 1);
        assert!(parse(b"a: &a [*a]\n", "f", &mut w).is_empty());
        let bomb = b"a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n\
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n\
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\nnetwork: [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
        let _ = parse(bomb, "f", &mut w);
    }
}
