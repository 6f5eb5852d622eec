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
}
