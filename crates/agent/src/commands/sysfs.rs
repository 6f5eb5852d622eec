//! Small helpers for reading /proc and /sys the way qemu-ga does, with bounded reads.
//!
//! Kernel files are trusted to be well formed but never trusted to be small or to parse: every
//! read has a size cap and every field is parsed without panicking.

use porthole_proto::CommandError;
use std::io::Read;
use std::path::Path;

/// Cap for a /proc table (/proc/self/mountinfo, /proc/diskstats, /proc/stat, /proc/net/*).
pub const TABLE_LIMIT: u64 = 16 << 20;

/// Reads at most `limit` bytes of `path` as text (invalid UTF-8 replaced).
pub fn read_text(path: &Path, limit: u64) -> std::io::Result<String> {
    let mut data = Vec::new();
    std::fs::File::open(path)?
        .take(limit)
        .read_to_end(&mut data)?;
    Ok(String::from_utf8_lossy(&data).into_owned())
}

/// `"<context>: <strerror>"`, qemu's error_setg_errno layout.
pub fn os_error(context: impl std::fmt::Display, error: &std::io::Error) -> CommandError {
    CommandError::failed(format!("{context}: {}", super::errno_text(error)))
}

/// The errno of an I/O error (EIO when it has none).
pub fn errno(error: &std::io::Error) -> i32 {
    error.raw_os_error().unwrap_or(libc::EIO)
}

/// strtoul(3) on a whole token: decimal digits only (`None` otherwise, as scanf would stop).
pub fn parse_u64(token: &str) -> Option<u64> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Like strtoul, an overflowing value saturates.
    Some(token.parse::<u64>().unwrap_or(u64::MAX))
}

/// scanf's `%lu %lu ...` over whitespace-separated tokens: the values parsed before the first
/// token that is not a number.
pub fn leading_numbers<'a>(tokens: impl Iterator<Item = &'a str>) -> Vec<u64> {
    tokens.map_while(parse_u64).collect()
}

/// atoi(3): optional blanks and sign, then the leading digits (0 when there are none).
pub fn atoi(text: &str) -> i64 {
    let text = text.trim_start();
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let value = rest
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |n, d| {
            n.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
    if negative {
        -value
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_like_scanf() {
        assert_eq!(leading_numbers("1 2 x 3".split_whitespace()), vec![1, 2]);
        assert_eq!(parse_u64("99999999999999999999999"), Some(u64::MAX));
        assert_eq!(parse_u64("-1"), None);
        assert_eq!(atoi("12abc"), 12);
        assert_eq!(atoi("-7"), -7);
        assert_eq!(atoi("x"), 0);
    }

    /// The /proc parsers take whatever bytes they are given without panicking: real samples,
    /// then thousands of deterministic mutations (byte flips, truncations, splices).
    #[test]
    fn proc_parsers_survive_mutations() {
        use crate::commands::{cpu, disks, fsinfo, network};
        let seeds: [&str; 6] = [
            "27 1 254:0 / /mnt/a\\040b rw shared:1 - ext4 /dev/vda rw\n22 27 0:21 / /proc rw - proc proc rw\n",
            "   7       0 loop0 396 0 18614 52 60 0 10605 162 0 76 237 0 0 0 0 13 22\n8 1 sda1 1 2 3 4\n",
            "cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 100 0 200 300 1 2 3 4 5 6\nintr 1\n",
            " face |bytes\n  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
            "Iface\tDest\neth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n",
            "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..3000usize {
            let seed = seeds[round % seeds.len()].as_bytes();
            let mut data = seed.to_vec();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % data.len().max(1);
                match next() % 4 {
                    0 => data.truncate(at),
                    1 => data.insert(at.min(data.len()), (next() % 256) as u8),
                    2 => {
                        if let Some(b) = data.get_mut(at) {
                            *b = (next() % 256) as u8;
                        }
                    }
                    _ => data.extend_from_slice(&seed[..at.min(seed.len())]),
                }
            }
            let text = String::from_utf8_lossy(&data);
            let _ = fsinfo::parse_mountinfo(&text);
            let _ = fsinfo::decode_mntname(&text);
            let _ = disks::parse_diskstats(&text);
            let _ = cpu::parse_cpustats(&text, 100);
            let _ = cpu::parse_loadavg(&text);
            let _ = network::parse_net_dev(&text);
            let _ = network::parse_route_v4(&text);
            let _ = network::parse_route_v6(&text);
        }
    }
}
