//! `rpmdb.sqlite` (rpm's sqlite backend, Fedora 33+, RHEL 9): rows of the table
//! `Packages(hnum INTEGER PRIMARY KEY, blob BLOB)`.
//!
//! A small reader of SQLite's file format for exactly this: the 100-byte file header,
//! `sqlite_schema` (page 1) to find the table's root page, then the table b-tree (interior
//! pages 0x05, leaf pages 0x0d), each cell's record and its overflow chain. Written here
//! rather than linking SQLite (see the module docs of `rpm`) so every read is bounded by our
//! own checks: each b-tree page is visited at most once, the tree depth is capped, an
//! overflow chain can never be longer than the payload it claims, and a payload can never
//! claim more than the file holds. Only the main database file is read: changes still in a
//! `-wal` file are not seen (rpm checkpoints on close).

use super::Budget;

/// Deepest table b-tree accepted (SQLite's own cursor limit is 20).
const MAX_DEPTH: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqliteError {
    #[error("not an SQLite 3 database (no magic at byte 0)")]
    NoMagic,
    #[error("bad page size {0} in the header at byte 16")]
    PageSize(u32),
    #[error("{reserved} reserved bytes per page leave too little of a {size}-byte page")]
    Reserved { reserved: u8, size: usize },
    #[error("text encoding {0} (byte 56) is not UTF-8")]
    Encoding(u32),
    #[error("no table `Packages` in sqlite_schema")]
    NoPackagesTable,
}

/// A page-level problem: it costs the rows on that page (or one row), never the database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("page {0} is outside the file")]
    OutOfFile(u64),
    #[error("page {0} is reached twice (b-tree loop)")]
    Loop(u64),
    #[error("page {page}: b-tree deeper than {MAX_DEPTH}")]
    TooDeep { page: u64 },
    #[error("page {page}: type {ty:#04x} is not a table b-tree page")]
    Type { page: u64, ty: u8 },
    #[error("page {page}: cell {cell} at byte {offset} is malformed")]
    Cell {
        page: u64,
        cell: usize,
        offset: usize,
    },
    #[error("row {rowid}: payload of {len} bytes is larger than the file")]
    PayloadTooLarge { rowid: i64, len: u64 },
    #[error("row {rowid}: overflow chain breaks at page {page}")]
    Overflow { rowid: i64, page: u64 },
    #[error("row {rowid}: record header is malformed")]
    Record { rowid: i64 },
    #[error("rows add up to more than the file holds (cells sharing bytes); stopped")]
    Budget,
}

struct Db<'a> {
    bytes: &'a [u8],
    budget: Budget,
    page_size: usize,
    usable: usize,
    pages: u64,
}

/// Reads a SQLite varint (1–9 bytes, big-endian 7-bit groups, the ninth byte whole).
fn varint(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for i in 0..9 {
        let byte = *b.get(at + i)?;
        if i == 8 {
            return Some(((v << 8) | u64::from(byte), 9));
        }
        v = (v << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?).into())
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> Db<'a> {
    fn open(bytes: &'a [u8]) -> Result<Self, SqliteError> {
        if bytes.get(..16) != Some(b"SQLite format 3\0".as_slice()) {
            return Err(SqliteError::NoMagic);
        }
        let raw = be16(bytes, 16).unwrap_or(0) as u32;
        let page_size = if raw == 1 { 65536 } else { raw as usize };
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(SqliteError::PageSize(raw));
        }
        let reserved = bytes.get(20).copied().unwrap_or(0);
        let usable = page_size - usize::from(reserved);
        if usable < 480 {
            return Err(SqliteError::Reserved {
                reserved,
                size: page_size,
            });
        }
        let encoding = be32(bytes, 56).unwrap_or(0);
        if encoding > 1 {
            return Err(SqliteError::Encoding(encoding));
        }
        Ok(Db {
            bytes,
            budget: Budget::for_file(bytes.len()),
            page_size,
            usable,
            pages: (bytes.len() / page_size) as u64,
        })
    }

    /// Page `n` (1-based), cut to the usable size.
    fn page(&self, n: u64) -> Result<&'a [u8], PageError> {
        if n == 0 || n > self.pages {
            return Err(PageError::OutOfFile(n));
        }
        let start = (n - 1) as usize * self.page_size;
        self.bytes
            .get(start..start + self.usable)
            .ok_or(PageError::OutOfFile(n))
    }

    /// Walks the table b-tree rooted at `root`, calling `row` for every (rowid, payload).
    fn walk(&self, root: u64, row: &mut dyn FnMut(i64, Vec<u8>), warn: &mut dyn FnMut(PageError)) {
        let mut seen = vec![false; self.pages as usize + 1];
        let mut stack = vec![(root, 0usize)];
        while let Some((n, depth)) = stack.pop() {
            if self.budget.exhausted() {
                return warn(PageError::Budget);
            }
            match seen.get_mut(n as usize) {
                Some(s) if !*s => *s = true,
                Some(_) => {
                    warn(PageError::Loop(n));
                    continue;
                }
                None => {
                    warn(PageError::OutOfFile(n));
                    continue;
                }
            }
            if depth > MAX_DEPTH {
                warn(PageError::TooDeep { page: n });
                continue;
            }
            match self.page(n) {
                Ok(page) => self.walk_page(n, page, depth, &mut stack, row, warn),
                Err(e) => warn(e),
            }
        }
    }

    fn walk_page(
        &self,
        n: u64,
        page: &[u8],
        depth: usize,
        stack: &mut Vec<(u64, usize)>,
        row: &mut dyn FnMut(i64, Vec<u8>),
        warn: &mut dyn FnMut(PageError),
    ) {
        let hdr = if n == 1 { 100 } else { 0 };
        let ty = page.get(hdr).copied().unwrap_or(0);
        let cells = be16(page, hdr + 3).unwrap_or(0);
        let (ptrs, interior) = match ty {
            0x05 => (hdr + 12, true),
            0x0d => (hdr + 8, false),
            _ => return warn(PageError::Type { page: n, ty }),
        };
        let mut children = Vec::new();
        for i in 0..cells {
            let Some(off) = be16(page, ptrs + 2 * i) else {
                return warn(PageError::Cell {
                    page: n,
                    cell: i,
                    offset: ptrs + 2 * i,
                });
            };
            let bad = PageError::Cell {
                page: n,
                cell: i,
                offset: off,
            };
            if interior {
                match be32(page, off) {
                    Some(child) => children.push(u64::from(child)),
                    None => warn(bad),
                }
            } else {
                match self.leaf_cell(page, off) {
                    Some(Ok((rowid, payload))) => row(rowid, payload),
                    Some(Err(e)) => warn(e),
                    None => warn(bad),
                }
            }
        }
        if interior {
            match be32(page, hdr + 8) {
                Some(right) => children.push(u64::from(right)),
                None => warn(PageError::Cell {
                    page: n,
                    cell: cells,
                    offset: hdr + 8,
                }),
            }
        }
        // Pushed in reverse so rows come out in rowid order.
        stack.extend(children.into_iter().rev().map(|c| (c, depth + 1)));
    }

    /// A table leaf cell: payload length, rowid, local payload, first overflow page.
    /// `None` when the cell itself is out of the page.
    fn leaf_cell(&self, page: &[u8], off: usize) -> Option<Result<(i64, Vec<u8>), PageError>> {
        let (len, a) = varint(page, off)?;
        let (rowid, b) = varint(page, off + a)?;
        let rowid = rowid as i64;
        let start = off + a + b;
        if len > self.bytes.len() as u64 {
            return Some(Err(PageError::PayloadTooLarge { rowid, len }));
        }
        if !self.budget.take(len) {
            return Some(Err(PageError::Budget));
        }
        let len = len as usize;
        let local = self.local_size(len);
        let mut payload = Vec::with_capacity(len);
        payload.extend_from_slice(page.get(start..start + local)?);
        if local < len {
            let first = be32(page, start + local)?;
            if let Err(e) = self.overflow(u64::from(first), len, &mut payload, rowid) {
                return Some(Err(e));
            }
        }
        Some(Ok((rowid, payload)))
    }

    /// How much of a `len`-byte table-leaf payload is stored in the cell (file format §1.6).
    fn local_size(&self, len: usize) -> usize {
        let u = self.usable;
        let max_local = u - 35;
        if len <= max_local {
            return len;
        }
        let min_local = (u - 12) * 32 / 255 - 23;
        let k = min_local + (len - min_local) % (u - 4);
        if k <= max_local {
            k
        } else {
            min_local
        }
    }

    /// Appends the overflow chain starting at `first` until `payload` holds `len` bytes.
    /// Each page adds `usable - 4` bytes, so a chain that loops runs out of `len` first.
    fn overflow(
        &self,
        mut n: u64,
        len: usize,
        payload: &mut Vec<u8>,
        rowid: i64,
    ) -> Result<(), PageError> {
        while payload.len() < len {
            let page = self
                .page(n)
                .map_err(|_| PageError::Overflow { rowid, page: n })?;
            let take = (len - payload.len()).min(self.usable - 4);
            payload.extend_from_slice(page.get(4..4 + take).unwrap_or_default());
            n = u64::from(be32(page, 0).unwrap_or(0));
        }
        Ok(())
    }
}

/// The values of a record (file format §2.1) as (serial type, bytes) pairs.
fn record(payload: &[u8]) -> Option<Vec<(u64, &[u8])>> {
    let (hlen, mut at) = varint(payload, 0)?;
    let hlen = usize::try_from(hlen).ok()?;
    let mut body = hlen;
    let mut out = Vec::new();
    while at < hlen {
        let (ty, n) = varint(payload, at)?;
        at += n;
        let size = match ty {
            0 | 8 | 9 => 0,
            1..=4 => ty as usize,
            5 => 6,
            6 | 7 => 8,
            10 | 11 => return None,
            _ => usize::try_from((ty - 12) / 2).ok()?,
        };
        out.push((ty, payload.get(body..body.checked_add(size)?)?));
        body += size;
    }
    Some(out)
}

fn int_value(ty: u64, b: &[u8]) -> Option<u64> {
    match ty {
        1..=6 => Some(b.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x))),
        8 => Some(0),
        9 => Some(1),
        _ => None,
    }
}

/// The root page of the table `Packages`, from the sqlite_schema rows on page 1's tree.
fn packages_root(db: &Db, warn: &mut dyn FnMut(PageError)) -> Option<u64> {
    let mut root = None;
    db.walk(
        1,
        &mut |_, payload| {
            let Some(cols) = record(&payload) else {
                return;
            };
            let text = |i: usize| cols.get(i).map(|(_, b)| *b);
            if text(0) == Some(b"table".as_slice())
                && text(1).is_some_and(|n| n.eq_ignore_ascii_case(b"Packages"))
                && root.is_none()
            {
                root = cols.get(3).and_then(|(ty, b)| int_value(*ty, b));
            }
        },
        warn,
    );
    root
}

/// Calls `on_record(hnum, blob)` for every row of `Packages`; page and row problems go to
/// `warnings`.
pub fn read(
    bytes: &[u8],
    on_record: &mut dyn FnMut(u64, &[u8]),
    warnings: &mut Vec<String>,
) -> Result<(), SqliteError> {
    let db = Db::open(bytes)?;
    let mut page_errors = Vec::new();
    let mut row_errors = Vec::new();
    let root = packages_root(&db, &mut |e| page_errors.push(e));
    let root = root.ok_or(SqliteError::NoPackagesTable)?;
    db.walk(
        root,
        &mut |rowid, payload| {
            // The blob is the row's one BLOB value (hnum, the rowid alias, is stored NULL).
            let blob = record(&payload)
                .and_then(|cols| cols.into_iter().find(|(ty, _)| *ty >= 12 && ty % 2 == 0));
            match blob {
                Some((_, blob)) => on_record(rowid as u64, blob),
                None => row_errors.push(PageError::Record { rowid }),
            }
        },
        &mut |e| page_errors.push(e),
    );
    warnings.extend(
        page_errors
            .into_iter()
            .chain(row_errors)
            .map(|e| format!("rpmdb.sqlite: {e}")),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        assert_eq!(varint(&[0x05], 0), Some((5, 1)));
        assert_eq!(varint(&[0x81, 0x00], 0), Some((128, 2)));
        assert_eq!(varint(&[0xff; 9], 0), Some((u64::MAX, 9)));
        assert_eq!(varint(&[0x81], 0), None);
    }

    #[test]
    fn records() {
        // header 3 bytes: NULL, blob of 2 bytes (type 16)
        let r = record(&[3, 0, 16, 0xaa, 0xbb]).unwrap();
        assert_eq!(r, vec![(0, &[][..]), (16, &[0xaa, 0xbb][..])]);
        assert_eq!(record(&[3, 0, 20, 0xaa]), None);
    }

    #[test]
    fn not_sqlite() {
        let mut w = Vec::new();
        let r = read(b"hello", &mut |_, _| {}, &mut w);
        assert_eq!(r, Err(SqliteError::NoMagic));
    }
}
