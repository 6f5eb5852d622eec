//! Plain-text output: aligned `key: value` lines, simple column tables, UTC timestamps.

use std::fmt::Write as _;

/// `key: value` lines with the values aligned; pairs without a value are left out.
pub fn key_values(pairs: &[(&str, Option<String>)]) -> String {
    let width = pairs
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.len() + 1)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        if let Some(value) = value {
            let label = format!("{key}:");
            let _ = writeln!(out, "{label:<width$} {value}");
        }
    }
    out
}

/// A table with a header row; columns are as wide as their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// `2024-03-01T12:00:00.5Z` for seconds since the epoch (UTC; fraction only when present).
pub fn utc_timestamp(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Nanoseconds since the epoch as a UTC timestamp.
pub fn utc_from_nanos(nanos: i64) -> String {
    utc_timestamp(
        nanos.div_euclid(1_000_000_000),
        nanos.rem_euclid(1_000_000_000) as u32,
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `+01:00` for seconds east of UTC.
pub fn utc_offset(secs: i64) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let abs = secs.unsigned_abs();
    format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60)
}

/// `512B`, `4.0K`, `1.5G`: binary units, one decimal above bytes.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS.get(unit).copied().unwrap_or("E"))
}

/// A duration in seconds as `3d 4h 05m 06s` (days and hours only when non-zero).
pub fn human_duration(secs: u64) -> String {
    let (days, hours) = (secs / 86_400, secs % 86_400 / 3600);
    let (minutes, seconds) = (secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if days > 0 {
        let _ = write!(out, "{days}d ");
    }
    if days > 0 || hours > 0 {
        let _ = write!(out, "{hours}h ");
    }
    let _ = write!(out, "{minutes:02}m {seconds:02}s");
    out
}

pub fn yes_no(flag: bool) -> &'static str {
    if flag {
        "yes"
    } else {
        "no"
    }
}

/// Writes a command's output to standard output. A reader that went away (`porthole inspect
/// IMAGE | head`) ends the output quietly, as it does for other Unix tools, rather than with
/// the panic `print!` gives on a closed pipe.
pub fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(
            utc_from_nanos(1_709_294_400_500_000_000),
            "2024-03-01T12:00:00.5Z"
        );
        assert_eq!(utc_timestamp(-1, 0), "1969-12-31T23:59:59Z");
        assert_eq!(utc_offset(-16_200), "-04:30");
        assert_eq!(utc_offset(3600), "+01:00");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(4096), "4.0K");
        assert_eq!(human_bytes(3 << 29), "1.5G");
        assert_eq!(human_duration(59), "00m 59s");
        assert_eq!(human_duration(90_061), "1d 1h 01m 01s");
    }

    #[test]
    fn alignment() {
        assert_eq!(
            key_values(&[
                ("id", Some("x".into())),
                ("gone", None),
                ("name", Some("y".into()))
            ]),
            "id:   x\nname: y\n"
        );
        assert_eq!(
            table(&["A", "LONG"], &[vec!["wide".into(), "b".into()]]),
            "A     LONG\nwide  b\n"
        );
    }
}
