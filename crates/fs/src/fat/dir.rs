//! Directory entries: 8.3 short entries, VFAT long-name (LFN) entries, the volume label entry,
//! the code page for short names and the FAT timestamp.

/// Attribute bits of a short entry.
const ATTR_READ_ONLY: u8 = 0x01;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_LFN: u8 = 0x0F;

/// One live entry of a directory (not `.`, `..`, deleted entries or the volume label).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The long name if a valid LFN run precedes the short entry, else the short name.
    pub name: String,
    /// The 8.3 name as Linux shows it without an LFN (`NAME.EXT`, case bits applied).
    pub short: String,
    pub attr: u8,
    pub first_cluster: u32,
    pub size: u32,
    /// Seconds since the epoch, the FAT local time read as UTC (Linux's default `tz`).
    pub mtime: Option<i64>,
    /// Byte offset of the short entry on the device: stable, unique, Linux's `i_pos`.
    pub pos: u64,
}

impl Entry {
    pub(crate) fn is_dir(&self) -> bool {
        self.attr & ATTR_DIRECTORY != 0
    }
    pub(crate) fn read_only(&self) -> bool {
        self.attr & ATTR_READ_ONLY != 0
    }
}

/// A long name being collected: the UTF-16 slots by sequence number, and the checksum of the
/// short entry it belongs to.
struct Lfn {
    units: Vec<u16>,
    expect: u8,
    checksum: u8,
}

/// The entries of one directory; `base` is the device offset of `bytes[0]` (for `pos`; a
/// directory spread over clusters passes the cluster offsets through `offset_of`).
/// Also returns the volume label entry's raw name, if present.
pub(crate) fn parse(
    bytes: &[u8],
    offset_of: impl Fn(usize) -> u64,
) -> (Vec<Entry>, Option<[u8; 11]>) {
    let mut entries = Vec::new();
    let mut label = None;
    let mut lfn: Option<Lfn> = None;
    for (i, raw) in bytes.chunks_exact(32).enumerate() {
        let first = raw[0];
        if first == 0 {
            break;
        }
        if first == 0xE5 {
            lfn = None;
            continue;
        }
        let attr = raw[11];
        if attr & 0x3F == ATTR_LFN {
            lfn = lfn_step(lfn.take(), raw);
            continue;
        }
        let long = lfn.take().and_then(|l| finish_lfn(l, &raw[..11]));
        if attr & ATTR_VOLUME_ID != 0 {
            if label.is_none() && attr & ATTR_DIRECTORY == 0 {
                label = <[u8; 11]>::try_from(&raw[..11]).ok();
            }
            continue;
        }
        if raw[..11] == *b".          " || raw[..11] == *b"..         " {
            continue;
        }
        let short = short_name(raw);
        let hi = u32::from(u16::from_le_bytes([raw[20], raw[21]]));
        let lo = u32::from(u16::from_le_bytes([raw[26], raw[27]]));
        entries.push(Entry {
            name: long.unwrap_or_else(|| short.clone()),
            short,
            attr,
            first_cluster: hi << 16 | lo,
            size: u32::from_le_bytes([raw[28], raw[29], raw[30], raw[31]]),
            mtime: timestamp(
                u16::from_le_bytes([raw[24], raw[25]]),
                u16::from_le_bytes([raw[22], raw[23]]),
            ),
            pos: offset_of(i * 32),
        });
    }
    (entries, label)
}

/// Adds one LFN slot. Slots come last-first: the first carries 0x40 and the highest sequence
/// number; any break in the sequence or checksum drops the long name, as Linux does.
fn lfn_step(current: Option<Lfn>, raw: &[u8]) -> Option<Lfn> {
    let seq = raw[0] & 0x1F;
    let checksum = raw[13];
    let mut l = if raw[0] & 0x40 != 0 {
        if seq == 0 || seq > 20 {
            return None;
        }
        Lfn {
            units: vec![0xFFFF; usize::from(seq) * 13],
            expect: seq,
            checksum,
        }
    } else {
        current.filter(|l| l.checksum == checksum)?
    };
    if seq != l.expect || seq == 0 {
        return None;
    }
    let slot = (usize::from(seq) - 1) * 13;
    let ranges = [1..11, 14..26, 28..32];
    let units = ranges.into_iter().flat_map(|r| {
        raw[r]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect::<Vec<_>>()
    });
    for (k, u) in units.enumerate() {
        if let Some(dst) = l.units.get_mut(slot + k) {
            *dst = u;
        }
    }
    l.expect = seq - 1;
    Some(l)
}

/// Completes a long name if every slot arrived and the checksum matches the short entry.
fn finish_lfn(l: Lfn, short: &[u8]) -> Option<String> {
    if l.expect != 0 || l.checksum != checksum(short) {
        return None;
    }
    let end = l
        .units
        .iter()
        .position(|&u| u == 0)
        .unwrap_or(l.units.len());
    let units = l.units.get(..end)?;
    let name: String = char::decode_utf16(units.iter().copied())
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// The LFN checksum of an 11-byte short name.
fn checksum(short: &[u8]) -> u8 {
    short
        .iter()
        .fold(0u8, |sum, &b| sum.rotate_right(1).wrapping_add(b))
}

/// `NAME.EXT` with trailing spaces removed and the NT case bits (byte 12) applied.
fn short_name(raw: &[u8]) -> String {
    let case = raw[12];
    let part = |bytes: &[u8], lower: bool| -> String {
        let end = bytes.iter().rposition(|&b| b != b' ').map_or(0, |p| p + 1);
        bytes[..end]
            .iter()
            .map(|&b| {
                let c = cp437(b);
                if lower {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
            .collect()
    };
    let mut base = raw[..8].to_vec();
    if base[0] == 0x05 {
        base[0] = 0xE5; // 0x05 stands for a real 0xE5 lead byte
    }
    let mut name = part(&base, case & 0x08 != 0);
    let ext = part(&raw[8..11], case & 0x10 != 0);
    if !ext.is_empty() {
        name.push('.');
        name.push_str(&ext);
    }
    name.replace('/', "_")
}

/// Decodes a label entry or BPB label: code page 437, trailing spaces dropped; `NO NAME` (the
/// placeholder mkfs writes) counts as no label, as in blkid.
pub(crate) fn label(raw: &[u8; 11]) -> Option<String> {
    let end = raw.iter().rposition(|&b| b != b' ' && b != 0)? + 1;
    let text: String = raw[..end].iter().map(|&b| cp437(b)).collect();
    (text != "NO NAME").then_some(text)
}

/// The FAT date and time (2-second resolution, no time zone) as seconds since the epoch.
fn timestamp(date: u16, time: u16) -> Option<i64> {
    let year = 1980 + i64::from(date >> 9);
    let month = i64::from((date >> 5) & 0x0F);
    let day = i64::from(date & 0x1F);
    if !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let secs = i64::from(time >> 11) * 3600
        + i64::from((time >> 5) & 0x3F) * 60
        + i64::from(time & 0x1F) * 2;
    Some(days_from_civil(year, month, day) * 86400 + secs)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Code page 437, Linux's default `codepage` for short names.
fn cp437(b: u8) -> char {
    const HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";
    if b < 0x80 {
        char::from(b)
    } else {
        HIGH.chars().nth(usize::from(b - 0x80)).unwrap_or('?')
    }
}

/// Case-insensitive comparison as vfat does it: Unicode simple upper-casing of each character.
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.eq_ignore_ascii_case(b)
        || a.chars()
            .flat_map(char::to_uppercase)
            .eq(b.chars().flat_map(char::to_uppercase))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_fat_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        // 2001-02-03 04:05:06
        let date = (21 << 9) | (2 << 5) | 3;
        let time = (4 << 11) | (5 << 5) | 3;
        assert_eq!(timestamp(date, time), Some(981_173_106));
    }

    #[test]
    fn cp437_table_is_complete() {
        assert_eq!(cp437(0x80), 'Ç');
        assert_eq!(cp437(0xE1), 'ß');
        assert_eq!(cp437(0xFF), '\u{a0}');
    }

    #[test]
    fn names_compare_without_case() {
        assert!(same_name("BOOTX64.EFI", "bootx64.efi"));
        assert!(same_name("ünï", "ÜNÏ"));
        assert!(!same_name("a", "b"));
    }
}
