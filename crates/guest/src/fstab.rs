//! `/etc/fstab`, as mount(8) reads it: whitespace-separated fields, `#` comments, octal escapes
//! (`\040` for a space). The guest wrote this file, so it is bounded and every line that does not
//! parse becomes a warning instead of an error.

/// Lines past this many are ignored (with a warning): a real fstab has tens.
pub const MAX_ENTRIES: usize = 4096;

/// One mount line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FstabEntry {
    /// What to mount: `UUID=...`, `LABEL=...`, `PARTUUID=...`, `/dev/...`, `tmpfs`, ...
    pub spec: String,
    /// Where, as a guest path.
    pub mountpoint: String,
    pub fstype: String,
    pub options: Vec<String>,
    /// The line number, for messages.
    pub line: usize,
}

impl FstabEntry {
    /// The value of `name=value` among the options (e.g. btrfs `subvol=`).
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find_map(|o| o.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
    }
}

/// The entries of `text`, and a warning for each line that could not be read.
pub fn parse(text: &[u8]) -> (Vec<FstabEntry>, Vec<String>) {
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    for (index, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        let content = String::from_utf8_lossy(raw);
        let content = content.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if entries.len() == MAX_ENTRIES {
            warnings.push(format!(
                "fstab: more than {MAX_ENTRIES} entries; the rest are ignored"
            ));
            break;
        }
        let fields: Vec<String> = content.split_whitespace().map(unescape).collect();
        match fields.as_slice() {
            [spec, mountpoint, fstype, rest @ ..] => entries.push(FstabEntry {
                spec: spec.clone(),
                mountpoint: mountpoint.clone(),
                fstype: fstype.clone(),
                options: rest
                    .first()
                    .map(|o| o.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
                line,
            }),
            _ => warnings.push(format!(
                "fstab line {line}: expected at least 3 fields, found {}",
                fields.len()
            )),
        }
    }
    (entries, warnings)
}

/// Decodes mount(8)'s `\NNN` octal escapes; anything else is kept as written.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let octal = bytes
            .get(at + 1..at + 4)
            .filter(|d| bytes[at] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .map(|d| d.iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0')));
        match octal.and_then(|n| u8::try_from(n).ok()) {
            Some(byte) => {
                out.push(byte);
                at += 4;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_options_and_escapes() {
        let text = b"# comment\n\nUUID=abcd / ext4 errors=remount-ro 0 1\n\
            LABEL=my\\040disk /mnt/my\\040disk xfs defaults\n\
            /dev/sda2 /home btrfs subvol=@home,compress=zstd 0 0\n\
            broken-line\n";
        let (entries, warnings) = parse(text);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].spec, "UUID=abcd");
        assert_eq!(entries[0].options, ["errors=remount-ro"]);
        assert_eq!(entries[1].spec, "LABEL=my disk");
        assert_eq!(entries[1].mountpoint, "/mnt/my disk");
        assert_eq!(entries[2].option("subvol"), Some("@home"));
        assert_eq!(entries[2].option("compress"), Some("zstd"));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("line 6"), "{warnings:?}");
    }

    #[test]
    fn hostile_text_is_bounded() {
        let mut text = Vec::new();
        for i in 0..(MAX_ENTRIES + 10) {
            text.extend_from_slice(format!("/dev/x{i} /m{i} ext4\n").as_bytes());
        }
        text.extend_from_slice(b"\\777 \\ \xff\xfe /x ext4\n");
        let (entries, warnings) = parse(&text);
        assert_eq!(entries.len(), MAX_ENTRIES);
        assert_eq!(warnings.len(), 1);
        let (odd, _) = parse(b"\\777\\0 \\ \xff\xfe ext4\n");
        assert_eq!(odd[0].spec, "\\777\\0");
    }
}
