//! A read-only, bounded reader of Windows registry hive files ("regf").
//!
//! The format (as documented publicly, e.g. in Maxim Suhanov's "Windows registry file format
//! specification"): a 4 KiB base block (`regf`, sequence numbers, root cell offset, size of the
//! hive bins data), then hive bins (`hbin`, multiples of 4 KiB) holding cells. A cell is an
//! `i32` size (negative while allocated) and its data; cells refer to each other by offset
//! from the start of the first hive bin. Keys are `nk` cells, their subkeys are listed by
//! `li`/`lf`/`lh` cells (or an `ri` index of such lists), values are `vk` cells listed by a
//! plain array cell, and data larger than 16344 bytes is split by a `db` cell into segments.
//!
//! Every structure is read lazily and checked on its own: an offset must land inside the bins
//! data, a cell's size must fit there, a record must fit its cell. Lists are capped
//! ([`MAX_SUBKEYS`], [`MAX_VALUES`]), value data is capped ([`MAX_VALUE_BYTES`]), and `ri`
//! indexes may only hold leaf lists, so no hive, however crafted, makes a lookup loop or
//! allocate beyond those bounds. [`Hive::walk`] guards recursive traversal with a depth cap,
//! an ancestor check and a budget of keys.
//!
//! Only the base hive is read. A hive whose base block sequence numbers differ was not
//! cleanly written back: Windows would first replay the transaction logs (`SOFTWARE.LOG1`,
//! `SOFTWARE.LOG2`) beside it. They are not applied here; [`Hive::warnings`] says so, and the
//! facts read are those of the last clean flush.

use std::fmt::Write as _;

use thiserror::Error;

/// The base block's size; cell offsets count from its end.
const BASE_BLOCK: usize = 4096;
/// Largest data segment of a `db` big-data record.
const SEGMENT_BYTES: usize = 16344;
/// Subkey entries visited in one key's lists, at most. Real keys have thousands at most
/// (`Classes` has tens of thousands, and is never listed here).
pub const MAX_SUBKEYS: usize = 1 << 18;
/// Values read from one key, at most.
pub const MAX_VALUES: usize = 1 << 16;
/// Bytes of one value's data, at most. The facts read here are short strings and numbers.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Key nesting [`Hive::walk`] follows; Windows itself refuses to create keys deeper than 512.
pub const MAX_WALK_DEPTH: usize = 512;
/// A real SOFTWARE hive is 50-300 MiB; callers refuse larger files before reading them.
pub const MAX_HIVE_BYTES: u64 = 1 << 30;

/// What went wrong reading a structure of the hive. Offsets are byte offsets in the file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HiveError {
    #[error("hive base block: {0}")]
    BaseBlock(String),
    #[error("hive cell offset {cell:#x} (byte {at:#x}) is outside the hive bins data", at = *cell as u64 + BASE_BLOCK as u64)]
    OutOfBounds { cell: u32 },
    #[error("hive cell at byte {at:#x}: {what}")]
    Cell { at: u64, what: String },
    #[error("hive {structure} at byte {at:#x}: signature {found:?}, expected {expected}")]
    Signature {
        structure: &'static str,
        at: u64,
        found: String,
        expected: &'static str,
    },
    #[error("hive {structure} at byte {at:#x}: more than {limit} entries")]
    TooMany {
        structure: &'static str,
        at: u64,
        limit: usize,
    },
    #[error("hive value {name:?} at byte {at:#x}: {what}")]
    Value { name: String, at: u64, what: String },
}

type Result<T> = std::result::Result<T, HiveError>;

fn byte_of(cell: u32) -> u64 {
    u64::from(cell) + BASE_BLOCK as u64
}

/// An open hive: the file's bytes and what the base block says about them.
#[derive(Debug)]
pub struct Hive<'a> {
    /// The bins data: from the end of the base block to its end as the base block gives it
    /// (or the end of the file, if that comes first).
    bins: &'a [u8],
    root: u32,
    minor_version: u32,
    warnings: Vec<String>,
}

fn le_u16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn le_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> Hive<'a> {
    /// Checks the base block and the first hive bin's signature. Damage that still lets the
    /// hive be read (a checksum mismatch, a dirty hive, a truncated file) becomes a warning.
    pub fn new(data: &'a [u8]) -> Result<Self> {
        let base = data
            .get(..BASE_BLOCK)
            .ok_or_else(|| HiveError::BaseBlock(format!("file of {} bytes", data.len())))?;
        if base.get(..4) != Some(b"regf".as_slice()) {
            return Err(HiveError::BaseBlock("no regf signature".into()));
        }
        let field = |at| le_u32(base, at).unwrap_or(0);
        let major = field(20);
        if major != 1 {
            return Err(HiveError::BaseBlock(format!("major version {major}")));
        }
        let mut warnings = Vec::new();
        let checksum = (0..127).fold(0u32, |x, i| x ^ field(i * 4));
        if checksum != field(508) {
            warnings.push(format!(
                "hive base block: checksum {:#010x}, computed {checksum:#010x}",
                field(508)
            ));
        }
        let (primary, secondary) = (field(4), field(8));
        if primary != secondary {
            warnings.push(format!(
                "hive is dirty (sequence numbers {primary} and {secondary}): changes pending in \
                 its transaction logs (.LOG1/.LOG2) are not applied"
            ));
        }
        let declared = field(40) as usize;
        let available = data.len() - BASE_BLOCK;
        if declared > available {
            warnings.push(format!(
                "hive truncated: the base block gives {declared} bytes of hive bins, the file \
                 has {available}"
            ));
        }
        let bins = data
            .get(BASE_BLOCK..BASE_BLOCK + declared.min(available))
            .unwrap_or_default();
        if bins.get(..4) != Some(b"hbin".as_slice()) {
            return Err(HiveError::Signature {
                structure: "first hive bin",
                at: BASE_BLOCK as u64,
                found: printable(bins.get(..4).unwrap_or_default()),
                expected: "hbin",
            });
        }
        Ok(Hive {
            bins,
            root: field(36),
            minor_version: field(24),
            warnings,
        })
    }

    /// What [`Hive::new`] found wrong but could read past.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The root key (the hive's own key; paths are relative to it).
    pub fn root(&self) -> Result<Key<'_, 'a>> {
        self.key(self.root)
    }

    /// The key at `path` below the root (components separated by `\`, matched without regard
    /// to case as Windows does), `None` if a component does not exist.
    pub fn open(&self, path: &str) -> Result<Option<Key<'_, 'a>>> {
        let mut key = self.root()?;
        for name in path.split('\\').filter(|c| !c.is_empty()) {
            match key.subkey(name)? {
                Some(child) => key = child,
                None => return Ok(None),
            }
        }
        Ok(Some(key))
    }

    /// The data of the allocated cell at `offset` (without its size field).
    fn cell(&self, offset: u32) -> Result<&'a [u8]> {
        let at = offset as usize;
        let size = self
            .bins
            .get(at..at.saturating_add(4))
            .and_then(|b| Some(i32::from_le_bytes(b.try_into().ok()?)))
            .ok_or(HiveError::OutOfBounds { cell: offset })?;
        let cell_error = |what: String| HiveError::Cell {
            at: byte_of(offset),
            what,
        };
        if size >= 0 {
            return Err(cell_error(format!("free cell (size {size}) used as data")));
        }
        let len = size.unsigned_abs() as usize;
        if len < 8 {
            return Err(cell_error(format!("cell size {len}")));
        }
        self.bins
            .get(at + 4..at.saturating_add(len))
            .ok_or_else(|| cell_error(format!("cell size {len} runs past the hive bins data")))
    }

    /// The cell at `offset`, which must start with `signature`.
    fn record(
        &self,
        offset: u32,
        structure: &'static str,
        signature: &[&'static str],
    ) -> Result<&'a [u8]> {
        let data = self.cell(offset)?;
        let found = data.get(..2).unwrap_or_default();
        if signature.iter().any(|s| s.as_bytes() == found) {
            Ok(data)
        } else {
            Err(HiveError::Signature {
                structure,
                at: byte_of(offset) + 4,
                found: printable(found),
                expected: signature.first().copied().unwrap_or_default(),
            })
        }
    }

    fn key(&self, offset: u32) -> Result<Key<'_, 'a>> {
        let data = self.record(offset, "key node", &["nk"])?;
        let short = || HiveError::Cell {
            at: byte_of(offset),
            what: "key node shorter than its fixed fields".into(),
        };
        let field = |at| le_u32(data, at).ok_or_else(short);
        let name_len = usize::from(le_u16(data, 72).ok_or_else(short)?);
        let raw_name = data.get(76..76 + name_len).ok_or_else(|| HiveError::Cell {
            at: byte_of(offset),
            what: format!("key name of {name_len} bytes runs past its cell"),
        })?;
        let flags = le_u16(data, 2).ok_or_else(short)?;
        Ok(Key {
            hive: self,
            offset,
            name: decode_name(raw_name, flags & 0x0020 != 0),
            subkey_count: field(20)?,
            subkey_list: field(28)?,
            value_count: field(36)?,
            value_list: field(40)?,
        })
    }

    /// Calls `visit(path, key)` for every key below (and including) the root, depth first.
    /// A key that is its own ancestor, nesting deeper than [`MAX_WALK_DEPTH`] or more than
    /// `budget` keys read in all (readable or not) stop the walk there and add a warning;
    /// unreadable keys and lists are skipped with a warning (the first hundred are kept).
    pub fn walk(&self, budget: usize, mut visit: impl FnMut(&str, &Key<'_, 'a>)) -> Vec<String> {
        let mut walk = Walk {
            left: budget,
            ancestors: Vec::new(),
            warnings: Vec::new(),
        };
        match self.root() {
            Ok(root) => walk.key(&root, String::new(), &mut visit),
            Err(e) => walk.warn(e.to_string()),
        }
        walk.warnings
    }
}

/// The state of one [`Hive::walk`].
struct Walk {
    left: usize,
    ancestors: Vec<u32>,
    warnings: Vec<String>,
}

impl Walk {
    const MAX_WARNINGS: usize = 100;

    fn warn(&mut self, warning: String) {
        if self.warnings.len() < Self::MAX_WARNINGS {
            self.warnings.push(warning);
        }
    }

    fn key<'h, 'a>(
        &mut self,
        key: &Key<'h, 'a>,
        path: String,
        visit: &mut impl FnMut(&str, &Key<'h, 'a>),
    ) {
        visit(&path, key);
        if self.ancestors.contains(&key.offset) {
            return self.warn(format!("{path}: key is its own ancestor (a cycle)"));
        }
        if self.ancestors.len() >= MAX_WALK_DEPTH {
            return self.warn(format!("{path}: deeper than {MAX_WALK_DEPTH} keys"));
        }
        let offsets = match key.subkey_offsets() {
            Ok(offsets) => offsets,
            Err(e) => return self.warn(format!("{path}: {e}")),
        };
        self.ancestors.push(key.offset);
        for offset in offsets {
            if self.left == 0 {
                self.warn(format!("{path}: key budget exhausted, walk stopped"));
                break;
            }
            self.left -= 1;
            match key.hive.key(offset) {
                Ok(child) => {
                    let child_path = format!("{path}\\{}", child.name);
                    self.key(&child, child_path, visit);
                }
                Err(e) => self.warn(format!("{path}: {e}")),
            }
        }
        self.ancestors.pop();
    }
}

/// A key (an `nk` record).
#[derive(Debug, Clone)]
pub struct Key<'h, 'a> {
    hive: &'h Hive<'a>,
    offset: u32,
    name: String,
    subkey_count: u32,
    subkey_list: u32,
    value_count: u32,
    value_list: u32,
}

impl<'h, 'a> Key<'h, 'a> {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's byte offset in the file (for messages).
    pub fn byte_offset(&self) -> u64 {
        byte_of(self.offset)
    }

    /// The offsets of the subkeys' `nk` cells, in list order, at most [`MAX_SUBKEYS`].
    fn subkey_offsets(&self) -> Result<Vec<u32>> {
        if self.subkey_count == 0 || self.subkey_list == u32::MAX {
            return Ok(Vec::new());
        }
        let mut offsets = Vec::new();
        let list = self
            .hive
            .record(self.subkey_list, "subkey list", &["lf", "lh", "li", "ri"])?;
        if list.get(..2) == Some(b"ri".as_slice()) {
            for leaf in list_entries(self.subkey_list, list, 4)? {
                let leaf_data =
                    self.hive
                        .record(leaf, "subkey list (in an index)", &["lf", "lh", "li"])?;
                self.push_leaf(leaf, leaf_data, &mut offsets)?;
            }
        } else {
            self.push_leaf(self.subkey_list, list, &mut offsets)?;
        }
        Ok(offsets)
    }

    fn push_leaf(&self, offset: u32, list: &[u8], offsets: &mut Vec<u32>) -> Result<()> {
        // `li` holds bare offsets, `lf`/`lh` an offset and a name hint each.
        let stride = if list.get(..2) == Some(b"li".as_slice()) {
            4
        } else {
            8
        };
        for entry in list_entries(offset, list, stride)? {
            if offsets.len() == MAX_SUBKEYS {
                return Err(HiveError::TooMany {
                    structure: "subkey list",
                    at: byte_of(offset),
                    limit: MAX_SUBKEYS,
                });
            }
            offsets.push(entry);
        }
        Ok(())
    }

    /// Every subkey, each read on its own: one damaged `nk` does not hide its siblings.
    pub fn subkeys(&self) -> Result<Vec<Result<Key<'h, 'a>>>> {
        Ok(self
            .subkey_offsets()?
            .into_iter()
            .map(|offset| self.hive.key(offset))
            .collect())
    }

    /// The subkey called `name` (any case), `None` if there is none. When it is not found
    /// and a subkey could not be read, that one may have been it: the error is returned.
    pub fn subkey(&self, name: &str) -> Result<Option<Key<'h, 'a>>> {
        let mut unreadable = None;
        for offset in self.subkey_offsets()? {
            match self.hive.key(offset) {
                Ok(key) if same_name(&key.name, name) => return Ok(Some(key)),
                Ok(_) => {}
                Err(e) => unreadable = unreadable.or(Some(e)),
            }
        }
        unreadable.map_or(Ok(None), Err)
    }

    fn value_offsets(&self) -> Result<Vec<u32>> {
        if self.value_count == 0 || self.value_list == u32::MAX {
            return Ok(Vec::new());
        }
        let count = self.value_count as usize;
        if count > MAX_VALUES {
            return Err(HiveError::TooMany {
                structure: "value list",
                at: byte_of(self.value_list),
                limit: MAX_VALUES,
            });
        }
        let list = self.hive.cell(self.value_list)?;
        (0..count)
            .map(|i| {
                le_u32(list, i * 4).ok_or_else(|| HiveError::Cell {
                    at: byte_of(self.value_list),
                    what: format!("value list of {count} entries longer than its cell"),
                })
            })
            .collect()
    }

    /// Every value, each read on its own.
    pub fn values(&self) -> Result<Vec<Result<Value>>> {
        Ok(self
            .value_offsets()?
            .into_iter()
            .map(|offset| self.read_value(offset))
            .collect())
    }

    /// The value called `name` (any case; `""` is the default value), `None` if there is none.
    /// As for [`Key::subkey`], an unreadable value record is returned as the error when
    /// `name` is not found.
    pub fn value(&self, name: &str) -> Result<Option<Value>> {
        let mut unreadable = None;
        for offset in self.value_offsets()? {
            match self.hive.record(offset, "value", &["vk"]) {
                Ok(vk) if same_name(&value_name(vk), name) => {
                    return self.read_value(offset).map(Some)
                }
                Ok(_) => {}
                Err(e) => unreadable = unreadable.or(Some(e)),
            }
        }
        unreadable.map_or(Ok(None), Err)
    }

    fn read_value(&self, offset: u32) -> Result<Value> {
        let vk = self.hive.record(offset, "value", &["vk"])?;
        let name = value_name(vk);
        let error = |what: String| HiveError::Value {
            name: name.clone(),
            at: byte_of(offset),
            what,
        };
        let (Some(size), Some(data_at), Some(kind)) =
            (le_u32(vk, 4), le_u32(vk, 8), le_u32(vk, 12))
        else {
            return Err(error("value record shorter than its fixed fields".into()));
        };
        // The top bit says the data (at most 4 bytes) sits in the offset field itself.
        let data = if size & 0x8000_0000 != 0 {
            let len = (size & 0x7fff_ffff) as usize;
            if len > 4 {
                return Err(error(format!("{len} bytes of data said to be inline")));
            }
            data_at
                .to_le_bytes()
                .get(..len)
                .unwrap_or_default()
                .to_vec()
        } else {
            let len = size as usize;
            if len > MAX_VALUE_BYTES {
                return Err(error(format!(
                    "{len} bytes of data, more than the limit of {MAX_VALUE_BYTES}"
                )));
            }
            self.hive
                .value_data(data_at, len)
                .map_err(|e| error(e.to_string()))?
        };
        Ok(Value { name, kind, data })
    }
}

impl Hive<'_> {
    /// `len` bytes of value data from the cell at `offset`: the cell itself, or the segments
    /// of a big-data (`db`) record.
    fn value_data(&self, offset: u32, len: usize) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let cell = self.cell(offset)?;
        if len > SEGMENT_BYTES && self.minor_version >= 4 && cell.get(..2) == Some(b"db".as_slice())
        {
            return self.big_data(offset, cell, len);
        }
        cell.get(..len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| HiveError::Cell {
                at: byte_of(offset),
                what: format!("{len} bytes of value data in a cell of {}", cell.len()),
            })
    }

    fn big_data(&self, offset: u32, db: &[u8], len: usize) -> Result<Vec<u8>> {
        let error = |what: String| HiveError::Cell {
            at: byte_of(offset),
            what,
        };
        let count = usize::from(le_u16(db, 2).ok_or_else(|| error("short db record".into()))?);
        let list_at = le_u32(db, 4).ok_or_else(|| error("short db record".into()))?;
        if count != len.div_ceil(SEGMENT_BYTES) {
            return Err(error(format!("{count} segments for {len} bytes of data")));
        }
        let list = self.cell(list_at)?;
        let mut data = Vec::with_capacity(len);
        for i in 0..count {
            let segment_at = le_u32(list, i * 4)
                .ok_or_else(|| error("big data segment list longer than its cell".into()))?;
            let want = (len - data.len()).min(SEGMENT_BYTES);
            let segment = self.cell(segment_at)?;
            let bytes = segment.get(..want).ok_or_else(|| HiveError::Cell {
                at: byte_of(segment_at),
                what: format!("big data segment of {} bytes, {want} needed", segment.len()),
            })?;
            data.extend_from_slice(bytes);
        }
        Ok(data)
    }
}

/// The offsets in the subkey list cell at `offset` (`count` at byte 2, entries from byte 4,
/// `stride` bytes each).
fn list_entries(offset: u32, list: &[u8], stride: usize) -> Result<Vec<u32>> {
    let count = usize::from(le_u16(list, 2).unwrap_or(0));
    (0..count)
        .map(|i| {
            le_u32(list, 4 + i * stride).ok_or_else(|| HiveError::Cell {
                at: byte_of(offset),
                what: format!("subkey list of {count} entries longer than its cell"),
            })
        })
        .collect()
}

fn value_name(vk: &[u8]) -> String {
    let len = usize::from(le_u16(vk, 2).unwrap_or(0));
    let flags = le_u16(vk, 16).unwrap_or(0);
    let raw = vk.get(20..20 + len).unwrap_or_default();
    decode_name(raw, flags & 0x0001 != 0)
}

/// Names are Latin-1 when "compressed", UTF-16LE otherwise.
fn decode_name(raw: &[u8], compressed: bool) -> String {
    if compressed {
        raw.iter().map(|&b| char::from(b)).collect()
    } else {
        utf16(raw)
    }
}

fn utf16(raw: &[u8]) -> String {
    let units = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// Registry names compare without regard to case.
fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || (!a.is_ascii() && a.to_uppercase() == b.to_uppercase())
}

fn printable(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        if b.is_ascii_graphic() {
            s.push(char::from(b));
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}

/// Value types (`REG_*`).
pub mod kind {
    pub const SZ: u32 = 1;
    pub const EXPAND_SZ: u32 = 2;
    pub const BINARY: u32 = 3;
    pub const DWORD: u32 = 4;
    pub const DWORD_BIG_ENDIAN: u32 = 5;
    pub const MULTI_SZ: u32 = 7;
    pub const QWORD: u32 = 11;
}

/// A value: its name, its `REG_*` type ([`kind`]) and its raw data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub name: String,
    pub kind: u32,
    pub data: Vec<u8>,
}

impl Value {
    /// A `REG_SZ` / `REG_EXPAND_SZ` string, up to its first NUL.
    pub fn string(&self) -> Option<String> {
        if !matches!(self.kind, kind::SZ | kind::EXPAND_SZ) {
            return None;
        }
        let mut s = utf16(&self.data);
        if let Some(end) = s.find('\0') {
            s.truncate(end);
        }
        Some(s)
    }

    /// The strings of a `REG_MULTI_SZ`, up to the empty string that ends the list.
    pub fn strings(&self) -> Option<Vec<String>> {
        if self.kind != kind::MULTI_SZ {
            return None;
        }
        let text = utf16(&self.data);
        Some(
            text.split('\0')
                .take_while(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    /// A `REG_DWORD` (or big-endian `REG_DWORD_BIG_ENDIAN`).
    pub fn dword(&self) -> Option<u32> {
        let bytes: [u8; 4] = self.data.get(..4)?.try_into().ok()?;
        match self.kind {
            kind::DWORD => Some(u32::from_le_bytes(bytes)),
            kind::DWORD_BIG_ENDIAN => Some(u32::from_be_bytes(bytes)),
            _ => None,
        }
    }

    /// A `REG_QWORD`.
    pub fn qword(&self) -> Option<u64> {
        let bytes: [u8; 8] = self.data.get(..8)?.try_into().ok()?;
        (self.kind == kind::QWORD).then(|| u64::from_le_bytes(bytes))
    }

    /// The data of a `REG_BINARY`.
    pub fn binary(&self) -> Option<&[u8]> {
        (self.kind == kind::BINARY).then_some(self.data.as_slice())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Cells appended to one hive bin; offsets are cell offsets.
    struct Bin(Vec<u8>);

    impl Bin {
        fn new() -> Self {
            let mut bin = vec![0u8; 32];
            bin[..4].copy_from_slice(b"hbin");
            Bin(bin)
        }

        fn add(&mut self, data: &[u8]) -> u32 {
            let at = self.0.len();
            let len = (4 + data.len() + 7) & !7;
            self.0.extend_from_slice(&(-(len as i32)).to_le_bytes());
            self.0.extend_from_slice(data);
            self.0.resize(at + len, 0);
            at as u32
        }

        fn hive(mut self, root: u32, minor: u32) -> Vec<u8> {
            self.0.resize(self.0.len().div_ceil(4096) * 4096, 0);
            let size = self.0.len() as u32;
            self.0[8..12].copy_from_slice(&size.to_le_bytes());
            let mut base = vec![0u8; 4096];
            base[..4].copy_from_slice(b"regf");
            for (at, v) in [(4, 1), (8, 1), (20, 1), (24, minor), (36, root), (40, size)] {
                base[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
            let sum = (0..127).fold(0, |x, i| x ^ le_u32(&base, i * 4).unwrap_or(0));
            base[508..512].copy_from_slice(&sum.to_le_bytes());
            base.extend_from_slice(&self.0);
            base
        }
    }

    fn nk(name: &[u8], compressed: bool, subkeys: (u32, u32), values: (u32, u32)) -> Vec<u8> {
        let mut d = vec![0u8; 76];
        d[..2].copy_from_slice(b"nk");
        let flags: u16 = if compressed { 0x20 } else { 0 };
        d[2..4].copy_from_slice(&flags.to_le_bytes());
        for (at, v) in [
            (20, subkeys.0),
            (28, subkeys.1),
            (36, values.0),
            (40, values.1),
        ] {
            d[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        d[72..74].copy_from_slice(&(name.len() as u16).to_le_bytes());
        d.extend_from_slice(name);
        d
    }

    fn vk(name: &str, size: u32, data: u32, kind: u32) -> Vec<u8> {
        let mut d = vec![0u8; 20];
        d[..2].copy_from_slice(b"vk");
        d[2..4].copy_from_slice(&(name.len() as u16).to_le_bytes());
        for (at, v) in [(4, size), (8, data), (12, kind)] {
            d[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        d[16] = 1;
        d.extend_from_slice(name.as_bytes());
        d
    }

    fn offsets(list: &[u32]) -> Vec<u8> {
        list.iter().flat_map(|o| o.to_le_bytes()).collect()
    }

    fn utf16z(s: &str) -> Vec<u8> {
        s.encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect()
    }

    #[test]
    fn big_data_inline_data_and_value_kinds() {
        let mut bin = Bin::new();
        let big: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
        let (first, rest) = big.split_at(SEGMENT_BYTES);
        let segments = [bin.add(first), bin.add(rest)];
        let list = bin.add(&offsets(&segments));
        let mut db = b"db".to_vec();
        db.extend_from_slice(&2u16.to_le_bytes());
        db.extend_from_slice(&list.to_le_bytes());
        let db = bin.add(&db);
        let multi: Vec<u8> = ["a", "bc", ""].iter().flat_map(|s| utf16z(s)).collect();
        let multi_at = bin.add(&multi);
        let qword_at = bin.add(&0x1122_3344_5566_7788u64.to_le_bytes());
        let text_at = bin.add(&utf16z("x\u{e9}"));
        let values = [
            bin.add(&vk("Big", 20_000, db, kind::BINARY)),
            bin.add(&vk("Inline", 0x8000_0004, 0xdead_beef, kind::DWORD)),
            bin.add(&vk(
                "BigEndian",
                0x8000_0004,
                0x0100_0000,
                kind::DWORD_BIG_ENDIAN,
            )),
            bin.add(&vk("Multi", multi.len() as u32, multi_at, kind::MULTI_SZ)),
            bin.add(&vk("Q", 8, qword_at, kind::QWORD)),
            bin.add(&vk("Text", 6, text_at, kind::EXPAND_SZ)),
            bin.add(&vk("Liar", 0x8000_0009, 0, kind::DWORD)),
            bin.add(&vk("BadDb", 40_000, db, kind::BINARY)),
        ];
        let value_list = bin.add(&offsets(&values));
        let name: Vec<u8> = "Äpfel".encode_utf16().flat_map(u16::to_le_bytes).collect();
        let child = bin.add(&nk(
            &name,
            false,
            (0, u32::MAX),
            (values.len() as u32, value_list),
        ));
        let mut li = b"li".to_vec();
        li.extend_from_slice(&1u16.to_le_bytes());
        li.extend_from_slice(&child.to_le_bytes());
        let li = bin.add(&li);
        let root = bin.add(&nk(b"ROOT", true, (1, li), (0, u32::MAX)));
        let bytes = bin.hive(root, 5);
        let hive = Hive::new(&bytes).unwrap();
        assert!(hive.warnings().is_empty(), "{:?}", hive.warnings());
        let key = hive.open("äPFEL").unwrap().unwrap();
        assert_eq!(key.name(), "Äpfel");
        let get = |name| key.value(name).unwrap().unwrap();
        assert_eq!(get("big").binary(), Some(big.as_slice()));
        assert_eq!(get("Inline").dword(), Some(0xdead_beef));
        assert_eq!(get("BigEndian").dword(), Some(0x0100_0000u32.swap_bytes()));
        assert_eq!(get("Multi").strings(), Some(vec!["a".into(), "bc".into()]));
        assert_eq!(get("Q").qword(), Some(0x1122_3344_5566_7788));
        assert_eq!(get("Text").string().as_deref(), Some("x\u{e9}"));
        assert_eq!(get("Text").dword(), None);
        assert!(key.value("Liar").is_err());
        let bad = key.value("BadDb").unwrap_err().to_string();
        assert!(bad.contains("2 segments for 40000 bytes"), "{bad}");
        assert_eq!(key.value("Missing").unwrap(), None);
    }

    #[test]
    fn huge_subkey_index_is_capped() {
        let mut bin = Bin::new();
        let child = bin.add(&nk(b"c", true, (0, u32::MAX), (0, u32::MAX)));
        let mut lf = b"lf".to_vec();
        lf.extend_from_slice(&u16::MAX.to_le_bytes());
        for _ in 0..u16::MAX {
            lf.extend_from_slice(&child.to_le_bytes());
            lf.extend_from_slice(b"c\0\0\0");
        }
        let lf = bin.add(&lf);
        let mut ri = b"ri".to_vec();
        ri.extend_from_slice(&5u16.to_le_bytes());
        ri.extend_from_slice(&offsets(&[lf; 5]));
        let ri = bin.add(&ri);
        let root = bin.add(&nk(b"ROOT", true, (1, ri), (0, u32::MAX)));
        let bytes = bin.hive(root, 5);
        let hive = Hive::new(&bytes).unwrap();
        let err = hive.root().unwrap().subkeys().unwrap_err();
        assert!(
            matches!(
                err,
                HiveError::TooMany {
                    limit: MAX_SUBKEYS,
                    ..
                }
            ),
            "{err}"
        );
        let mut visited = 0;
        let warnings = hive.walk(1000, |_, _| visited += 1);
        assert_eq!(visited, 1);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }
}
