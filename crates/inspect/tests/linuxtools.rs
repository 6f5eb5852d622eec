//! Linux configuration parsers against the tools that own the formats: `getent` (glibc's
//! files backend) for this machine's passwd and group, `ifquery` (ifupdown) for an interfaces
//! file, `cvtsudoers` (sudo's own sudoers grammar, as JSON) for sudoers files.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use porthole_inspect::linux::accounts::{parse_group, parse_passwd, parse_sudoers};
use porthole_inspect::linux::network::{ifupdown, netmask_prefix};
use porthole_testkit::run;

#[test]
fn passwd_and_group_match_getent() {
    let mut warnings = Vec::new();
    let passwd = parse_passwd(&std::fs::read("/etc/passwd").unwrap(), &mut warnings);
    let got: Vec<String> = passwd
        .iter()
        .map(|p| format!("{}:{}:{}:{}:{}", p.name, p.uid, p.gid, p.home, p.shell))
        .collect();
    let want: Vec<String> = run("getent", "libc-bin", &["passwd"], None)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            format!("{}:{}:{}:{}:{}", f[0], f[2], f[3], f[5], f[6])
        })
        .collect();
    assert!(want.len() > 5, "getent lists only {want:?}");
    assert_eq!(got, want);
    let groups = parse_group(&std::fs::read("/etc/group").unwrap(), &mut warnings);
    let got: Vec<String> = groups
        .iter()
        .map(|g| format!("{}:{}:{}", g.name, g.gid, g.members.join(",")))
        .collect();
    let want: Vec<String> = run("getent", "libc-bin", &["group"], None)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            format!("{}:{}:{}", f[0], f[2], f[3])
        })
        .collect();
    assert_eq!(got, want);
    assert!(warnings.is_empty(), "{warnings:?}");
}

const INTERFACES: &str = "# written for the test\nsource /etc/network/interfaces.d/*\n\n\
auto lo\niface lo inet loopback\n\n\
auto ens3\niface ens3 inet static\n    address 192.0.2.10\n    netmask 255.255.255.0\n\
    gateway 192.0.2.1\n    dns-nameservers 192.0.2.53 9.9.9.9\n\n\
allow-hotplug ens4\niface ens4 inet static\n\taddress 198.51.100.7/25\n\tgateway 198.51.100.1\n\n\
iface ens5 inet dhcp\n\thostname porthole\n\n\
iface br0 inet static\n  bridge_ports ens6\n  address 203.0.113.9\n  netmask 255.255.0.0\n";

/// What `ifquery -i FILE <iface>` prints: its options as `key: value` lines.
fn ifquery(file: &str, state: &str, iface: &str) -> BTreeMap<String, String> {
    run(
        "ifquery",
        "ifupdown",
        &["-i", file, "--state-dir", state, iface],
        None,
    )
    .lines()
    .filter_map(|l| l.split_once(": "))
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[test]
fn ifupdown_matches_ifquery() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("interfaces");
    std::fs::write(&file, INTERFACES).unwrap();
    let (file, state) = (file.to_str().unwrap(), dir.path().to_str().unwrap());
    let mut warnings = Vec::new();
    let parsed = ifupdown::parse(INTERFACES.as_bytes(), file, &mut warnings);
    assert!(warnings.is_empty(), "{warnings:?}");
    let names: Vec<_> = parsed.iter().map(|i| i.interface.as_str()).collect();
    assert_eq!(names, ["lo", "ens3", "ens4", "ens5", "br0"]);
    for iface in &parsed {
        let want = ifquery(file, state, &iface.interface);
        // ifquery prints the address as written and the netmask apart (or derived from a
        // prefix); porthole reports address/prefix.
        let want_address = want.get("address").map(|a| match want.get("netmask") {
            Some(mask) if !a.contains('/') => format!("{a}/{}", netmask_prefix(mask).unwrap()),
            _ => a.clone(),
        });
        assert_eq!(
            iface.addresses.first(),
            want_address.as_ref(),
            "{iface:?} vs {want:?}"
        );
        assert_eq!(iface.gateway.as_ref(), want.get("gateway"), "{iface:?}");
        let dns: Vec<String> = want
            .get("dns-nameservers")
            .map(|d| d.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        assert_eq!(iface.dns, dns, "{iface:?}");
    }
    assert_eq!(parsed[3].method.as_deref(), Some("dhcp"));
    assert_eq!(parsed[2].method.as_deref(), Some("static"));
}

/// Rules of every shape the parser must get right: groups, uids, user lists with blanks,
/// aliases, tags, runas lists, comments after rules, continuation lines.
const SUDOERS: &str = "# sudoers for the test\nDefaults env_reset\nDefaults:alice !lecture\n\
User_Alias ADMINS = alice, bob\nCmnd_Alias PKG = /usr/bin/apt, /usr/bin/dpkg\n\
root ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL # admins\n%wheel ALL=(ALL) NOPASSWD: ALL\n\
#1000 ALL = (root) NOPASSWD: PKG\nalice, bob ALL = ALL\nADMINS ALL=(root) /usr/bin/id\n\
carol host1=(root) NOPASSWD: /usr/bin/ls, \\\n   /usr/bin/cat\ndave ALL = /usr/bin/id, PASSWD: ALL\n";

/// (users, grants ALL, NOPASSWD) of each user specification granting ALL or NOPASSWD, as
/// sudo's own parser (cvtsudoers) reads it.
fn cvtsudoers(path: &str) -> Vec<(String, bool, bool)> {
    let json = run("cvtsudoers", "sudo", &["-f", "json", path], None);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut out = Vec::new();
    for spec in doc["User_Specs"].as_array().unwrap() {
        let users: Vec<String> = spec["User_List"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| {
                let (kind, name) = u.as_object().unwrap().iter().next().unwrap();
                let name = name
                    .as_str()
                    .map_or_else(|| name.to_string(), str::to_string);
                match kind.as_str() {
                    "usergroup" => format!("%{name}"),
                    "userid" => format!("#{name}"),
                    _ => name,
                }
            })
            .collect();
        let cmnds = spec["Cmnd_Specs"].as_array().unwrap();
        let all = cmnds.iter().any(|c| {
            c["Commands"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["command"] == "ALL")
        });
        let nopasswd = cmnds.iter().any(|c| {
            c["Options"]
                .as_array()
                .is_some_and(|o| o.iter().any(|x| x["authenticate"] == false))
        });
        if all || nopasswd {
            out.push((users.join(","), all, nopasswd));
        }
    }
    out
}

#[test]
fn sudoers_rules_match_cvtsudoers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sudoers");
    std::fs::write(&path, SUDOERS).unwrap();
    let want = cvtsudoers(path.to_str().unwrap());
    let got: Vec<(String, bool, bool)> = parse_sudoers(SUDOERS.as_bytes(), "sudoers")
        .rules
        .into_iter()
        .map(|r| (r.who, r.all_commands, r.nopasswd))
        .collect();
    assert!(want.len() >= 6, "{want:?}");
    assert_eq!(got, want);
}
