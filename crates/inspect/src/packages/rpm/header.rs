//! The rpm header blob: what every rpm database stores per installed package.
//!
//! Layout (all big-endian): `il` (index entry count, u32), `dl` (data store length, u32),
//! `il` index entries of 16 bytes (tag, type, offset into the store, count), then the `dl`
//! byte data store. A blob may be preceded by the 8-byte header magic (`8e ad e8 01` and four
//! reserved bytes) when it comes from a package file or `rpmdb --exportdb`; databases store it
//! without.
//!
//! Only the tags virt-inspector reports are read. Every entry is checked against the store
//! before use: a lying offset, a string without its NUL or a wrong type costs that one field
//! (with a warning), never the package, unless the field is the name.

use crate::packages::Application;

/// rpm's own bounds (lib/header.c): at most 0xffff index entries and a data store below
/// 256 MiB (`HEADER_TAGS_MAX`, `HEADER_DATA_MAX`); larger claims are rejected before any
/// arithmetic on them.
pub const MAX_TAGS: u32 = 0x0000_ffff;
pub const MAX_DATA: u32 = 0x0fff_ffff;
/// The largest header blob accepted: rpm's `headerMaxbytes` (256 MiB).
pub const MAX_HEADER_BYTES: usize = 256 << 20;

const MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];

pub const TAG_NAME: u32 = 1000;
pub const TAG_VERSION: u32 = 1001;
pub const TAG_RELEASE: u32 = 1002;
pub const TAG_EPOCH: u32 = 1003;
pub const TAG_SUMMARY: u32 = 1004;
pub const TAG_DESCRIPTION: u32 = 1005;
pub const TAG_VENDOR: u32 = 1011;
pub const TAG_URL: u32 = 1020;
pub const TAG_ARCH: u32 = 1022;
pub const TAG_SOURCERPM: u32 = 1044;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// Why a header blob, or one of its entries, could not be read. Offsets are bytes from the
/// start of the blob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header blob of {len} bytes is shorter than its 8-byte preamble")]
    TooShort { len: usize },
    #[error("header claims {il} index entries (rpm allows at most {MAX_TAGS})")]
    TooManyTags { il: u32 },
    #[error("header claims a {dl}-byte data store (rpm allows at most {MAX_DATA})")]
    DataTooLarge { dl: u32 },
    #[error("header needs {needed} bytes but the blob has {len}")]
    Truncated { needed: u64, len: usize },
    #[error("tag {tag} (entry at byte {at}): offset {offset} is outside the {dl}-byte data store")]
    BadOffset {
        tag: u32,
        at: usize,
        offset: i32,
        dl: u32,
    },
    #[error("tag {tag} (entry at byte {at}): type {ty} where {expected} was expected")]
    BadType {
        tag: u32,
        at: usize,
        ty: u32,
        expected: &'static str,
    },
    #[error("tag {tag} (entry at byte {at}): string at store offset {offset} has no NUL")]
    Unterminated { tag: u32, at: usize, offset: i32 },
    #[error("tag {tag} (entry at byte {at}): count 0")]
    ZeroCount { tag: u32, at: usize },
    #[error("no NAME tag")]
    NoName,
}

/// One index entry as stored.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Byte offset of the entry in the blob, for messages.
    at: usize,
    tag: u32,
    ty: u32,
    offset: i32,
    count: u32,
}

/// A parsed header: the index and the data store, borrowed from the blob.
#[derive(Debug)]
pub struct Header<'a> {
    index: &'a [u8],
    store: &'a [u8],
    /// Where the index starts in the blob (8, or 16 after a magic), for messages.
    index_at: usize,
}

fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
        .unwrap_or(0)
}

impl<'a> Header<'a> {
    /// Checks the preamble and the bounds of the index and store.
    pub fn parse(blob: &'a [u8]) -> Result<Self, HeaderError> {
        let (blob, skipped) = match blob.get(..4) {
            Some(m) if m == MAGIC => (blob.get(8..).unwrap_or_default(), 8),
            _ => (blob, 0),
        };
        if blob.len() < 8 {
            return Err(HeaderError::TooShort { len: blob.len() });
        }
        let (il, dl) = (be32(blob, 0), be32(blob, 4));
        if il > MAX_TAGS {
            return Err(HeaderError::TooManyTags { il });
        }
        if dl > MAX_DATA {
            return Err(HeaderError::DataTooLarge { dl });
        }
        // Both bounded above, so this cannot overflow.
        let index_len = il as usize * 16;
        let needed = 8 + index_len + dl as usize;
        if needed > blob.len() || needed > MAX_HEADER_BYTES {
            return Err(HeaderError::Truncated {
                needed: needed as u64,
                len: blob.len(),
            });
        }
        Ok(Header {
            index: blob.get(8..8 + index_len).unwrap_or_default(),
            store: blob.get(8 + index_len..needed).unwrap_or_default(),
            index_at: 8 + skipped,
        })
    }

    fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.index.chunks_exact(16).enumerate().map(|(i, e)| Entry {
            at: self.index_at + i * 16,
            tag: be32(e, 0),
            ty: be32(e, 4),
            offset: be32(e, 8) as i32,
            count: be32(e, 12),
        })
    }

    /// The first entry with `tag` (rpm keeps tags unique; a duplicate is ignored).
    fn find(&self, tag: u32) -> Option<Entry> {
        self.entries().find(|e| e.tag == tag)
    }

    fn data_at(&self, e: &Entry) -> Result<&'a [u8], HeaderError> {
        let bad = || HeaderError::BadOffset {
            tag: e.tag,
            at: e.at,
            offset: e.offset,
            dl: self.store.len() as u32,
        };
        let off = usize::try_from(e.offset).map_err(|_| bad())?;
        self.store.get(off..).ok_or_else(bad)
    }

    /// A string tag: STRING, or the first element of STRING_ARRAY / I18NSTRING (the
    /// untranslated text, as `rpm -q --qf` shows it in the C locale). `Ok(None)` when absent.
    pub fn string(&self, tag: u32) -> Result<Option<String>, HeaderError> {
        let Some(e) = self.find(tag) else {
            return Ok(None);
        };
        if !matches!(e.ty, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING) {
            return Err(HeaderError::BadType {
                tag,
                at: e.at,
                ty: e.ty,
                expected: "a string",
            });
        }
        if e.count == 0 {
            return Err(HeaderError::ZeroCount { tag, at: e.at });
        }
        let data = self.data_at(&e)?;
        let end = data
            .iter()
            .position(|&b| b == 0)
            .ok_or(HeaderError::Unterminated {
                tag,
                at: e.at,
                offset: e.offset,
            })?;
        let bytes = data.get(..end).unwrap_or_default();
        Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
    }

    /// An INT32 tag's first value. `Ok(None)` when absent.
    pub fn int32(&self, tag: u32) -> Result<Option<u32>, HeaderError> {
        let Some(e) = self.find(tag) else {
            return Ok(None);
        };
        if e.ty != TYPE_INT32 {
            return Err(HeaderError::BadType {
                tag,
                at: e.at,
                ty: e.ty,
                expected: "INT32",
            });
        }
        if e.count == 0 {
            return Err(HeaderError::ZeroCount { tag, at: e.at });
        }
        let data = self.data_at(&e)?;
        match data.get(..4) {
            Some(b) => Ok(Some(be32(b, 0))),
            None => Err(HeaderError::BadOffset {
                tag,
                at: e.at,
                offset: e.offset,
                dl: self.store.len() as u32,
            }),
        }
    }
}

/// Turns a header blob into an [`Application`], pushing one warning (prefixed by `record`)
/// per unreadable field. `None` when the blob or its name cannot be read.
pub fn application(blob: &[u8], record: &str, warnings: &mut Vec<String>) -> Option<Application> {
    let h = match Header::parse(blob) {
        Ok(h) => h,
        Err(e) => {
            warnings.push(format!("{record}: {e}"));
            return None;
        }
    };
    let mut field = |tag: u32| match h.string(tag) {
        Ok(v) => v.filter(|s| !s.is_empty()),
        Err(e) => {
            warnings.push(format!("{record}: {e}"));
            None
        }
    };
    let Some(name) = field(TAG_NAME) else {
        warnings.push(format!("{record}: {}", HeaderError::NoName));
        return None;
    };
    let mut app = Application {
        name,
        version: field(TAG_VERSION),
        release: field(TAG_RELEASE),
        arch: field(TAG_ARCH),
        summary: field(TAG_SUMMARY),
        description: field(TAG_DESCRIPTION),
        publisher: field(TAG_VENDOR),
        url: field(TAG_URL),
        source_package: field(TAG_SOURCERPM),
        ..Application::default()
    };
    app.epoch = match h.int32(TAG_EPOCH) {
        Ok(v) => u64::from(v.unwrap_or(0)),
        Err(e) => {
            warnings.push(format!("{record}: {e}"));
            0
        }
    };
    Some(app)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Builds a blob from (tag, type, data) entries, each entry's data appended to the store.
    pub(crate) fn blob(entries: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut store = Vec::new();
        for &(tag, ty, data) in entries {
            if ty == TYPE_INT32 {
                while store.len() % 4 != 0 {
                    store.push(0);
                }
            }
            index.extend_from_slice(&tag.to_be_bytes());
            index.extend_from_slice(&ty.to_be_bytes());
            index.extend_from_slice(&(store.len() as u32).to_be_bytes());
            index.extend_from_slice(&1u32.to_be_bytes());
            store.extend_from_slice(data);
        }
        let mut b = Vec::new();
        b.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        b.extend_from_slice(&(store.len() as u32).to_be_bytes());
        b.extend(index);
        b.extend(store);
        b
    }

    #[test]
    fn reads_strings_int_and_i18n() {
        let b = blob(&[
            (TAG_NAME, TYPE_STRING, b"foo\0"),
            (TAG_EPOCH, TYPE_INT32, &3u32.to_be_bytes()),
            (TAG_SUMMARY, TYPE_I18NSTRING, b"first\0second\0"),
            (TAG_VERSION, TYPE_STRING, b"1.0\0"),
        ]);
        let mut w = Vec::new();
        let app = application(&b, "r", &mut w).unwrap();
        assert_eq!(app.name, "foo");
        assert_eq!(app.epoch, 3);
        assert_eq!(app.summary.as_deref(), Some("first"));
        assert_eq!(app.version.as_deref(), Some("1.0"));
        assert!(w.is_empty(), "{w:?}");
        let mut with_magic = vec![0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];
        with_magic.extend(&b);
        assert_eq!(application(&with_magic, "r", &mut w), Some(app));
    }

    #[test]
    fn lying_fields_cost_only_that_field() {
        let mut b = blob(&[
            (TAG_NAME, TYPE_STRING, b"foo\0"),
            (TAG_URL, TYPE_STRING, b"http://x\0"),
            (TAG_SUMMARY, TYPE_STRING, b"nonul"),
        ]);
        // URL's offset points past the store.
        b[8 + 16 + 8..8 + 16 + 12].copy_from_slice(&0x7fff_0000u32.to_be_bytes());
        let mut w = Vec::new();
        let app = application(&b, "pkg 9", &mut w).unwrap();
        assert_eq!(app.url, None);
        assert_eq!(app.summary, None);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w.iter().any(|m| m.starts_with("pkg 9: tag 1020")), "{w:?}");
        assert!(w.iter().any(|m| m.contains("no NUL")), "{w:?}");
    }

    #[test]
    fn hostile_preambles_are_errors() {
        let mut w = Vec::new();
        for b in [
            vec![0u8; 3],
            [0xffu8, 0xff, 0xff, 0xff, 0, 0, 0, 0].to_vec(),
            [0u8, 0, 0, 1, 0xff, 0xff, 0xff, 0xff].to_vec(),
            [0u8, 0, 0, 2, 0, 0, 0, 16].to_vec(),
            blob(&[(TAG_VERSION, TYPE_STRING, b"1\0")]),
        ] {
            assert_eq!(application(&b, "r", &mut w), None);
        }
        assert_eq!(w.len(), 5, "{w:?}");
    }
}
