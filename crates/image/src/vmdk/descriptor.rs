//! The VMDK text descriptor: `key="value"` lines and extent lines such as
//! `RW 4192256 SPARSE "disk-s001.vmdk"` or `RW 2048 FLAT "disk-flat.vmdk" 0`.

use crate::bytes::{corrupt, unsupported};
use crate::Result;

use super::FORMAT;

/// Most extent lines accepted (a 2 GB-split disk of 8 TiB has 4096).
pub(crate) const MAX_EXTENTS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExtentKind {
    Flat,
    Sparse,
    Zero,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtentLine {
    pub sectors: u64,
    pub kind: ExtentKind,
    pub file: Option<String>,
    /// Start of the extent's data in its file, in sectors (flat extents).
    pub offset: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Descriptor {
    pub create_type: String,
    pub parent_hint: Option<String>,
    pub extents: Vec<ExtentLine>,
}

/// Parses a descriptor; `base` is its offset in the file, for error messages.
pub(crate) fn parse(text: &[u8], base: u64) -> Result<Descriptor> {
    let text = String::from_utf8_lossy(text);
    let mut d = Descriptor::default();
    let mut at = base;
    for raw in text.split('\n') {
        let line = raw.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        if line.is_empty() || line.starts_with('#') {
        } else if let Some(rest) = ["RW ", "RDONLY ", "NOACCESS "]
            .iter()
            .find_map(|a| line.strip_prefix(a))
        {
            if d.extents.len() >= MAX_EXTENTS {
                return Err(unsupported(
                    FORMAT,
                    format!("more than {MAX_EXTENTS} extents"),
                ));
            }
            d.extents.push(extent(rest, at)?);
        } else if let Some((key, value)) = line.split_once('=') {
            let value = unquote(value.trim());
            match key.trim() {
                "createType" => d.create_type = value.to_string(),
                "parentFileNameHint" if !value.is_empty() => {
                    d.parent_hint = Some(value.to_string())
                }
                _ => {}
            }
        }
        at += raw.len() as u64 + 1;
    }
    Ok(d)
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// `SECTORS TYPE ["FILE" [OFFSET]]` after the access word.
fn extent(rest: &str, at: u64) -> Result<ExtentLine> {
    let bad = |what: &str| corrupt(FORMAT, at, format!("extent line {rest:?}: {what}"));
    let mut words = rest.trim_start().splitn(3, ' ');
    let sectors = words
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| bad("bad sector count"))?;
    let kind = match words.next().unwrap_or_default() {
        "FLAT" | "VMFS" => ExtentKind::Flat,
        "SPARSE" => ExtentKind::Sparse,
        "ZERO" => ExtentKind::Zero,
        other => return Err(unsupported(FORMAT, format!("extent type {other:?}"))),
    };
    let tail = words.next().unwrap_or_default().trim();
    let (file, offset) = match tail.strip_prefix('"').and_then(|t| t.split_once('"')) {
        Some((name, after)) => {
            let after = after.trim();
            let offset = if after.is_empty() {
                0
            } else {
                after.parse().map_err(|_| bad("bad offset"))?
            };
            (Some(name.to_string()), offset)
        }
        None if kind == ExtentKind::Zero => (None, 0),
        None => return Err(bad("missing file name")),
    };
    Ok(ExtentLine {
        sectors,
        kind,
        file,
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_split_descriptor() -> Result<()> {
        let text = b"# Disk DescriptorFile\nversion=1\nCID=1234\nparentCID=ffffffff\n\
createType=\"twoGbMaxExtentFlat\"\n\n# Extent description\nRW 4192256 FLAT \"my disk-f001.vmdk\" 0\n\
RW 100 SPARSE \"d-s002.vmdk\"\nRDONLY 8 ZERO\nparentFileNameHint=\"base.vmdk\"\n";
        let d = parse(text, 0)?;
        assert_eq!(d.create_type, "twoGbMaxExtentFlat");
        assert_eq!(d.parent_hint.as_deref(), Some("base.vmdk"));
        assert_eq!(d.extents.len(), 3);
        assert_eq!(d.extents[0].file.as_deref(), Some("my disk-f001.vmdk"));
        assert_eq!(d.extents[1].kind, ExtentKind::Sparse);
        assert_eq!(d.extents[2].kind, ExtentKind::Zero);
        assert!(parse(b"RW x FLAT \"a\"", 0).is_err());
        assert!(parse(b"RW 1 VMFSSPARSE \"a\"", 0).is_err());
        Ok(())
    }
}
