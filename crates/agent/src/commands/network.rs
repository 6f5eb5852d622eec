//! Networking: guest-network-get-interfaces (getifaddrs, SIOCGIFHWADDR, /proc/net/dev) and
//! guest-network-get-route (/proc/net/route, /proc/net/ipv6_route; qemu 9.1's command).
//!
//! Interfaces come out in getifaddrs order (links first, then IPv4, then IPv6 addresses), one
//! entry per name. As in qemu-ga, `ip-addresses` and `statistics` appear only for an interface
//! with at least one IPv4/IPv6 address, and addresses are printed like glibc's inet_ntop.

use super::sysfs::{leading_numbers, os_error, read_text, TABLE_LIMIT};
use super::{blocking, NoArgs};
use crate::agent::Agent;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrLike, SockaddrStorage};
use porthole_proto::commands::{InterfaceStats, IpAddress, NetworkInterface, NetworkRoute};
use porthole_proto::CommandError;
use serde_json::Value;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

pub async fn get_interfaces(_agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    blocking(|| super::to_value(interfaces()?)).await
}

fn interfaces() -> Result<Vec<NetworkInterface>, CommandError> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| {
        CommandError::failed(format!("getifaddrs failed: {}", super::strerror(e as i32)))
    })?;
    let sock = nix::sys::socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| {
        CommandError::failed(format!(
            "failed to create socket: {}",
            super::strerror(e as i32)
        ))
    })?;
    let stats = read_text(Path::new("/proc/net/dev"), TABLE_LIMIT)
        .map(|t| parse_net_dev(&t))
        .unwrap_or_default();
    let mut list: Vec<NetworkInterface> = Vec::new();
    for ifa in addrs {
        let at = match list.iter().position(|i| i.name == ifa.interface_name) {
            Some(at) => at,
            None => {
                list.push(NetworkInterface {
                    name: ifa.interface_name.clone(),
                    hardware_address: None,
                    ip_addresses: None,
                    statistics: None,
                });
                list.len() - 1
            }
        };
        let Some(info) = list.get_mut(at) else {
            continue;
        };
        if info.hardware_address.is_none() {
            info.hardware_address = hardware_address(&sock, &info.name).map(format_mac);
        }
        let Some(address) = ip_address(ifa.address.as_ref(), ifa.netmask.as_ref()) else {
            continue;
        };
        info.ip_addresses.get_or_insert_with(Vec::new).push(address);
        if info.statistics.is_none() {
            info.statistics = stats.get(&info.name).cloned();
        }
    }
    Ok(list)
}

/// An IPv4/IPv6 address with its prefix length (0 without a netmask); `None` for other families.
fn ip_address(
    address: Option<&SockaddrStorage>,
    netmask: Option<&SockaddrStorage>,
) -> Option<IpAddress> {
    let address = address?;
    let ones = |bytes: &[u8]| bytes.iter().map(|b| i64::from(b.count_ones())).sum::<i64>();
    if let Some(v4) = address.as_sockaddr_in() {
        let prefix = netmask
            .and_then(|m| m.as_sockaddr_in())
            .map_or(0, |m| ones(&m.ip().octets()));
        return Some(IpAddress {
            ip_address: v4.ip().to_string(),
            ip_address_type: "ipv4".into(),
            prefix,
        });
    }
    if address.family() == Some(AddressFamily::Inet6) {
        let v6 = address.as_sockaddr_in6()?;
        let prefix = netmask
            .and_then(|m| m.as_sockaddr_in6())
            .map_or(0, |m| ones(&m.ip().octets()));
        return Some(IpAddress {
            ip_address: inet_ntop6(v6.ip().octets()),
            ip_address_type: "ipv6".into(),
            prefix,
        });
    }
    None
}

/// The first six bytes of the interface's hardware address (SIOCGIFHWADDR), as qemu-ga reads
/// them; `None` when the kernel has none (qemu-ga logs and goes on).
fn hardware_address(sock: &OwnedFd, name: &str) -> Option<[u8; 6]> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return None;
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads ifr_name and writes ifr_hwaddr inside the ifreq we own.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if rc == -1 {
        return None;
    }
    // SAFETY: after a successful SIOCGIFHWADDR the union holds ifru_hwaddr.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(data.iter()) {
        *dst = *src as u8;
    }
    Some(mac)
}

fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// glibc's inet_ntop(AF_INET6): the first longest run of two or more zero groups becomes `::`,
/// and `::a.b.c.d` / `::ffff:a.b.c.d` end in dotted IPv4 (Rust prints `::a.b.c.d` in hex).
pub fn inet_ntop6(bytes: [u8; 16]) -> String {
    let words: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    // (start, len) of the first longest zero run of length >= 2.
    let mut best: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < words.len() {
        if words[i] == 0 {
            let len = words[i..].iter().take_while(|w| **w == 0).count();
            if len >= 2 && !matches!(best, Some((_, l)) if l >= len) {
                best = Some((i, len));
            }
            i += len;
        } else {
            i += 1;
        }
    }
    let mut out = String::new();
    let mut i = 0;
    while i < words.len() {
        if let Some((start, len)) = best.filter(|(s, l)| i >= *s && i < s + l) {
            if i == start {
                out.push(':');
            }
            i = start + len;
            continue;
        }
        if i != 0 {
            out.push(':');
        }
        let embedded_v4 =
            matches!(best, Some((0, 6))) || (best == Some((0, 5)) && words[5] == 0xffff);
        if i == 6 && embedded_v4 {
            out.push_str(&format!(
                "{}.{}.{}.{}",
                bytes[12], bytes[13], bytes[14], bytes[15]
            ));
            return out;
        }
        out.push_str(&format!("{:x}", words[i]));
        i += 1;
    }
    if best.is_some_and(|(s, l)| s + l == words.len()) {
        out.push(':');
    }
    out
}

/// /proc/net/dev: interface name → counters. Lines that do not have all 16 numbers are skipped.
pub fn parse_net_dev(text: &str) -> HashMap<String, InterfaceStats> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some((name, rest)) = line.trim_start().split_once(':') else {
            continue;
        };
        let v = leading_numbers(rest.split_whitespace().take(16));
        if v.len() != 16 || out.contains_key(name) {
            continue;
        }
        out.insert(
            name.to_string(),
            InterfaceStats {
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errs: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errs: v[10],
                tx_dropped: v[11],
            },
        );
    }
    out
}

pub async fn get_route(_agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    blocking(|| {
        let mut routes = Vec::new();
        for (path, parse) in [
            (
                "/proc/net/route",
                parse_route_v4 as fn(&str) -> Vec<NetworkRoute>,
            ),
            ("/proc/net/ipv6_route", parse_route_v6),
        ] {
            // Without IPv6 the second file is missing: report what the other had.
            match read_text(Path::new(path), TABLE_LIMIT) {
                Ok(text) => routes.extend(parse(&text)),
                Err(e) if routes.is_empty() && path.ends_with("/route") => {
                    return Err(os_error(format!("open(\"{path}\")"), &e))
                }
                Err(_) => {}
            }
        }
        super::to_value(routes)
    })
    .await
}

fn hex_u32(token: &str) -> Option<u32> {
    u32::from_str_radix(token, 16).ok()
}

/// /proc/net/route: a header line, then `Iface Destination Gateway Flags RefCnt Use Metric
/// Mask MTU Window IRTT`, addresses as the raw network-order u32 in hex.
pub fn parse_route_v4(text: &str) -> Vec<NetworkRoute> {
    let ipv4 = |n: u32| {
        let b = n.to_le_bytes();
        format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let t: Vec<&str> = line.split_whitespace().take(11).collect();
            let [iface, dest, gw, flags, refcnt, used, metric, mask, mtu, window, irtt] =
                t.as_slice()
            else {
                return None;
            };
            let int = |s: &str| s.parse::<i32>().ok().map(i64::from);
            Some(NetworkRoute {
                iface: iface.to_string(),
                destination: ipv4(hex_u32(dest)?),
                gateway: Some(ipv4(hex_u32(gw)?)),
                flags: Some(u64::from(hex_u32(flags)?)),
                refcnt: Some(int(refcnt)?),
                r#use: Some(int(used)?),
                metric: int(metric)?,
                mask: Some(ipv4(hex_u32(mask)?)),
                mtu: Some(int(mtu)?),
                window: Some(int(window)?),
                irtt: Some(int(irtt)?),
                version: 4,
                ..NetworkRoute::default()
            })
        })
        .collect()
}

/// /proc/net/ipv6_route: `dest destlen src srclen nexthop metric refcnt use flags iface`, all
/// hex. Numbers go through a C `int` in qemu-ga, so 0xffffffff is -1.
pub fn parse_route_v6(text: &str) -> Vec<NetworkRoute> {
    let addr = |s: &str| -> Option<String> {
        let bytes = s.as_bytes();
        if bytes.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(inet_ntop6(out))
    };
    let int = |s: &str| hex_u32(s).map(|n| i64::from(n as i32));
    text.lines()
        .filter_map(|line| {
            let t: Vec<&str> = line.split_whitespace().take(10).collect();
            let [dest, destlen, src, srclen, nexthop, metric, refcnt, used, flags, iface] =
                t.as_slice()
            else {
                return None;
            };
            Some(NetworkRoute {
                destination: addr(dest)?,
                desprefixlen: Some(int(destlen)?.to_string()),
                source: Some(addr(src)?),
                srcprefixlen: Some(int(srclen)?.to_string()),
                nexthop: Some(addr(nexthop)?),
                metric: int(metric)?,
                refcnt: Some(int(refcnt)?),
                r#use: Some(int(used)?),
                flags: Some(int(flags)? as u64),
                iface: iface.to_string(),
                version: 6,
                ..NetworkRoute::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> String {
        let addr: std::net::Ipv6Addr = s.parse().expect("test address");
        inet_ntop6(addr.octets())
    }

    #[test]
    fn ipv6_like_glibc() {
        assert_eq!(v6("::"), "::");
        assert_eq!(v6("::1"), "::1");
        assert_eq!(v6("fe80::fc:ff:fe00:1"), "fe80::fc:ff:fe00:1");
        assert_eq!(v6("fd00::2"), "fd00::2");
        assert_eq!(v6("::ffff:192.0.2.1"), "::ffff:192.0.2.1");
        assert_eq!(v6("::192.0.2.1"), "::192.0.2.1");
        assert_eq!(v6("1:0:0:2:0:0:0:3"), "1:0:0:2::3");
        assert_eq!(v6("1:0:0:2:0:0:3:4"), "1::2:0:0:3:4");
        assert_eq!(v6("1:0:2:3:4:5:6:7"), "1:0:2:3:4:5:6:7");
        assert_eq!(v6("1::"), "1::");
    }

    #[test]
    fn net_dev() {
        let text = "Inter-|   Receive  |  Transmit\n face |bytes packets\n\
            \x20   lo:    3293      31    0    0    0     0          0         0     3293      31    0    0    0     0       0          0\n\
            \x20 eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n bad: 1 2\n";
        let stats = parse_net_dev(text);
        assert_eq!(stats.len(), 2);
        assert_eq!(stats["lo"].rx_bytes, 3293);
        let e = &stats["eth0"];
        assert_eq!((e.rx_dropped, e.tx_bytes, e.tx_dropped), (4, 9, 12));
    }

    #[test]
    fn routes() {
        let v4 = parse_route_v4(
            "Iface\tDestination\tGateway\n\
             eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             short line\n",
        );
        assert_eq!(v4.len(), 1);
        assert_eq!(v4[0].gateway.as_deref(), Some("192.0.2.1"));
        assert_eq!(
            (v4[0].metric, v4[0].flags, v4[0].version),
            (100, Some(3), 4)
        );
        let v6 = parse_route_v6(
            "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 \
             00000000000000000000000000000000 ffffffff 00000002 00000000 00200200       lo\n",
        );
        assert_eq!(v6.len(), 1);
        assert_eq!(v6[0].destination, "fe80::");
        assert_eq!(v6[0].desprefixlen.as_deref(), Some("64"));
        assert_eq!(v6[0].metric, -1);
        assert_eq!(v6[0].iface, "lo");
    }
}
