//! Berkeley DB `Packages` (rpm's `bdb` backend: RHEL ≤ 8, CentOS 7/8, older Fedora and SUSE):
//! a hash database (btree in some setups) mapping a 4-byte package number, in the writer's
//! byte order, to the header blob. Key 0, where present, is rpm's counter record.
//!
//! Read the way rpm's own read-only reader (lib/backend/bdb_ro.c) does: the metadata page
//! (magic, version, page size, last page; hash: max bucket and the `spares` table mapping
//! buckets to pages; btree: the root), then every hash bucket's page chain, or the btree's
//! leaf chain, and the overflow pages of values larger than a page. Either byte order.
//!
//! Bounds: a page number is checked against both the metadata's last page and the file, and
//! a page must carry its own number; every page is visited at most once across all chains,
//! so a looping chain ends with a warning; an overflow chain is at most as long as the file
//! has pages and never longer than the value it claims.

use super::Budget;

const HASH_MAGIC: u32 = 0x0006_1561;
const BTREE_MAGIC: u32 = 0x0005_3162;
/// Size of the generic page header; the item offset array follows it.
const PAGE_HDR: usize = 26;

const P_HASH_UNSORTED: u8 = 2;
const P_IBTREE: u8 = 3;
const P_LBTREE: u8 = 5;
const P_OVERFLOW: u8 = 7;
const P_HASHMETA: u8 = 8;
const P_HASH: u8 = 13;

/// Item types (hash: first byte of the item; btree: third byte, high bit = deleted).
const KEYDATA: u8 = 1;
const OFFPAGE: u8 = 3;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BdbError {
    #[error("not a Berkeley DB hash or btree database (no magic at byte 12)")]
    NoMagic,
    #[error("unsupported {kind} version {version} at byte 16")]
    Version { kind: &'static str, version: u32 },
    #[error("bad page size {0} at byte 20")]
    PageSize(u32),
    #[error("encrypted database (algorithm {0} at byte 24)")]
    Encrypted(u8),
}

/// A page or item problem: costs what hangs below it, never the database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("page {0} is beyond the last page or the file")]
    OutOfFile(u32),
    #[error("page {page} (byte {offset}) carries page number {found}")]
    Number { page: u32, offset: u64, found: u32 },
    #[error("page {0} is reached twice (loop)")]
    Loop(u32),
    #[error("page {page}: type {ty} where {expected} was expected")]
    Type {
        page: u32,
        ty: u8,
        expected: &'static str,
    },
    #[error("page {page}: item {item} at byte {offset} is malformed")]
    Item {
        page: u32,
        item: usize,
        offset: usize,
    },
    #[error("page {page}: item {item} is of unsupported type {ty} (duplicates?)")]
    ItemType { page: u32, item: usize, ty: u8 },
    #[error("overflow value of {len} bytes from page {first} is larger than the file")]
    OverflowTooLarge { first: u32, len: u32 },
    #[error("overflow chain from page {first} breaks at page {page}")]
    Overflow { first: u32, page: u32 },
    #[error("record with a {0}-byte key (expected a 4-byte package number)")]
    Key(usize),
    #[error("btree deeper than {0} levels")]
    TooDeep(usize),
    #[error("values add up to more than the file holds (items sharing overflow pages); stopped")]
    Budget,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Hash,
    Btree,
}

struct Db<'a> {
    bytes: &'a [u8],
    budget: Budget,
    le: bool,
    kind: Kind,
    page_size: usize,
    /// Pages that may be read: min(last page + 1, pages in the file).
    pages: u32,
    max_bucket: u32,
    spares: [u32; 32],
    root: u32,
}

/// A key or value: on the page, or gathered from overflow pages.
enum Item<'a> {
    Page(&'a [u8]),
    Owned(Vec<u8>),
}

impl Item<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Item::Page(b) => b,
            Item::Owned(v) => v,
        }
    }
}

/// Tracks pages already read, so no chain can loop.
struct Seen(Vec<bool>);

impl Seen {
    fn first_visit(&mut self, n: u32) -> Result<(), PageError> {
        match self.0.get_mut(n as usize) {
            Some(s) if !*s => {
                *s = true;
                Ok(())
            }
            Some(_) => Err(PageError::Loop(n)),
            None => Err(PageError::OutOfFile(n)),
        }
    }
}

impl<'a> Db<'a> {
    fn u16(&self, b: &[u8], at: usize) -> Option<usize> {
        let a: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(usize::from(if self.le {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }))
    }

    fn u32(&self, b: &[u8], at: usize) -> Option<u32> {
        let a: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if self.le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    }

    fn open(bytes: &'a [u8]) -> Result<Self, BdbError> {
        let magic: [u8; 4] = bytes
            .get(12..16)
            .and_then(|m| m.try_into().ok())
            .ok_or(BdbError::NoMagic)?;
        let (kind, le) = match (u32::from_le_bytes(magic), u32::from_be_bytes(magic)) {
            (HASH_MAGIC, _) => (Kind::Hash, true),
            (_, HASH_MAGIC) => (Kind::Hash, false),
            (BTREE_MAGIC, _) => (Kind::Btree, true),
            (_, BTREE_MAGIC) => (Kind::Btree, false),
            _ => return Err(BdbError::NoMagic),
        };
        let mut db = Db {
            bytes,
            budget: Budget::for_file(bytes.len()),
            le,
            kind,
            page_size: 0,
            pages: 0,
            max_bucket: 0,
            spares: [0; 32],
            root: 0,
        };
        let version = db.u32(bytes, 16).unwrap_or(0);
        let ok = match kind {
            Kind::Hash => (8..=10).contains(&version),
            Kind::Btree => (9..=10).contains(&version),
        };
        if !ok {
            let kind = if kind == Kind::Hash { "hash" } else { "btree" };
            return Err(BdbError::Version { kind, version });
        }
        let size = db.u32(bytes, 20).unwrap_or(0);
        if !(512..=65536).contains(&size) || !size.is_power_of_two() {
            return Err(BdbError::PageSize(size));
        }
        let encrypt = bytes.get(24).copied().unwrap_or(0);
        if encrypt != 0 {
            return Err(BdbError::Encrypted(encrypt));
        }
        db.page_size = size as usize;
        let in_file = (bytes.len() / db.page_size) as u32;
        let last = db.u32(bytes, 32).unwrap_or(0);
        db.pages = in_file.min(last.saturating_add(1));
        db.max_bucket = db.u32(bytes, 72).unwrap_or(0);
        let mut spares = [0u32; 32];
        for (i, s) in spares.iter_mut().enumerate() {
            *s = db.u32(bytes, 96 + 4 * i).unwrap_or(0);
        }
        db.spares = spares;
        db.root = db.u32(bytes, 88).unwrap_or(0);
        Ok(db)
    }

    /// Page `n`, which must be in bounds and carry its own number.
    fn page(&self, n: u32) -> Result<&'a [u8], PageError> {
        if n == 0 || n >= self.pages {
            return Err(PageError::OutOfFile(n));
        }
        let start = n as usize * self.page_size;
        let page = self
            .bytes
            .get(start..start + self.page_size)
            .ok_or(PageError::OutOfFile(n))?;
        match self.u32(page, 8) {
            Some(found) if found == n => Ok(page),
            found => Err(PageError::Number {
                page: n,
                offset: start as u64,
                found: found.unwrap_or(0),
            }),
        }
    }

    fn next(&self, page: &[u8]) -> u32 {
        self.u32(page, 16).unwrap_or(0)
    }

    fn entries(&self, page: &[u8]) -> usize {
        let n = self.u16(page, 20).unwrap_or(0);
        n.min((self.page_size - PAGE_HDR) / 2)
    }

    fn offset(&self, page: &[u8], i: usize) -> Option<usize> {
        self.u16(page, PAGE_HDR + 2 * i)
    }

    /// Gathers an overflow value of `len` bytes starting at page `first`.
    fn overflow(&self, first: u32, len: u32) -> Result<Vec<u8>, PageError> {
        if len as usize > self.bytes.len() {
            return Err(PageError::OverflowTooLarge { first, len });
        }
        if !self.budget.take(u64::from(len)) {
            return Err(PageError::Budget);
        }
        let len = len as usize;
        let mut out = Vec::with_capacity(len);
        let mut n = first;
        // A chain visits distinct pages, so it is never longer than the file has pages.
        for _ in 0..self.pages {
            if out.len() == len {
                return Ok(out);
            }
            let broken = PageError::Overflow { first, page: n };
            let page = self.page(n).map_err(|_| broken.clone())?;
            if page.get(25) != Some(&P_OVERFLOW) {
                return Err(broken);
            }
            let plen = self.u16(page, 22).unwrap_or(0);
            let data = page.get(PAGE_HDR..PAGE_HDR + plen).ok_or(broken.clone())?;
            if plen == 0 || plen > len - out.len() {
                return Err(broken);
            }
            out.extend_from_slice(data);
            n = self.next(page);
        }
        if out.len() == len {
            Ok(out)
        } else {
            Err(PageError::Overflow { first, page: n })
        }
    }

    /// A hash item at `off`..`off + len` of page `n`.
    fn hash_item(
        &self,
        n: u32,
        page: &'a [u8],
        i: usize,
        off: usize,
        len: usize,
    ) -> Result<Item<'a>, PageError> {
        let bad = PageError::Item {
            page: n,
            item: i,
            offset: off,
        };
        let item = page
            .get(off..off.checked_add(len).ok_or(bad.clone())?)
            .ok_or(bad.clone())?;
        match item.first().copied() {
            Some(KEYDATA) => Ok(Item::Page(item.get(1..).unwrap_or_default())),
            Some(OFFPAGE) if len == 12 => {
                let pg = self.u32(item, 4).ok_or(bad.clone())?;
                let tlen = self.u32(item, 8).ok_or(bad)?;
                self.overflow(pg, tlen).map(Item::Owned)
            }
            Some(ty) => Err(PageError::ItemType {
                page: n,
                item: i,
                ty,
            }),
            None => Err(bad),
        }
    }

    /// The key/value pairs of one hash page.
    fn hash_page(
        &self,
        n: u32,
        page: &'a [u8],
        emit: &mut dyn FnMut(Result<(Item<'a>, Item<'a>), PageError>),
    ) {
        let count = self.entries(page);
        let min = PAGE_HDR + 2 * count;
        let mut i = 0;
        while i + 1 < count {
            let pair = (|| {
                let bad = |at| PageError::Item {
                    page: n,
                    item: i,
                    offset: at,
                };
                let koff = self.offset(page, i).ok_or(bad(0))?;
                let voff = self.offset(page, i + 1).ok_or(bad(0))?;
                // Items grow down from the page end: an item ends where the previous begins.
                let kend = if i == 0 {
                    self.page_size
                } else {
                    self.offset(page, i - 1).ok_or(bad(0))?
                };
                if koff < min || voff < min || kend < koff || koff < voff {
                    return Err(bad(koff));
                }
                let key = self.hash_item(n, page, i, koff, kend - koff)?;
                let val = self.hash_item(n, page, i + 1, voff, koff - voff)?;
                Ok((key, val))
            })();
            emit(pair);
            i += 2;
        }
    }

    /// A btree leaf item at `off` (`None` when marked deleted).
    fn btree_item(
        &self,
        n: u32,
        page: &'a [u8],
        i: usize,
        off: usize,
    ) -> Result<Option<Item<'a>>, PageError> {
        let bad = PageError::Item {
            page: n,
            item: i,
            offset: off,
        };
        let ty = *page.get(off + 2).ok_or(bad.clone())?;
        if ty & 0x80 != 0 {
            return Ok(None);
        }
        match ty {
            KEYDATA => {
                let len = self.u16(page, off).ok_or(bad.clone())?;
                let data = page.get(off + 3..off + 3 + len).ok_or(bad)?;
                Ok(Some(Item::Page(data)))
            }
            OFFPAGE => {
                let pg = self.u32(page, off + 4).ok_or(bad.clone())?;
                let tlen = self.u32(page, off + 8).ok_or(bad)?;
                self.overflow(pg, tlen).map(|v| Some(Item::Owned(v)))
            }
            ty => Err(PageError::ItemType {
                page: n,
                item: i,
                ty,
            }),
        }
    }

    fn btree_page(
        &self,
        n: u32,
        page: &'a [u8],
        emit: &mut dyn FnMut(Result<(Item<'a>, Item<'a>), PageError>),
    ) {
        let count = self.entries(page);
        let mut i = 0;
        while i + 1 < count {
            let pair = (|| {
                let koff = self.offset(page, i).unwrap_or(usize::MAX);
                let voff = self.offset(page, i + 1).unwrap_or(usize::MAX);
                match (
                    self.btree_item(n, page, i, koff)?,
                    self.btree_item(n, page, i + 1, voff)?,
                ) {
                    (Some(k), Some(v)) => Ok(Some((k, v))),
                    _ => Ok(None),
                }
            })();
            match pair {
                Ok(Some(kv)) => emit(Ok(kv)),
                Ok(None) => {}
                Err(e) => emit(Err(e)),
            }
            i += 2;
        }
    }

    /// Follows a page chain from `first` through `next` pointers, each page once.
    fn chain(
        &self,
        first: u32,
        types: &[u8],
        seen: &mut Seen,
        on_page: &mut dyn FnMut(u32, &'a [u8]),
        warn: &mut dyn FnMut(PageError),
    ) {
        let mut n = first;
        while n != 0 && !self.budget.exhausted() {
            let page = match seen.first_visit(n).and_then(|()| self.page(n)) {
                Ok(p) => p,
                Err(e) => return warn(e),
            };
            let ty = page.get(25).copied().unwrap_or(0);
            if !types.contains(&ty) {
                return warn(PageError::Type {
                    page: n,
                    ty,
                    expected: "a hash or btree leaf page",
                });
            }
            on_page(n, page);
            n = self.next(page);
        }
    }

    fn walk(&self, emit: &mut dyn FnMut(Result<(Item<'a>, Item<'a>), PageError>)) {
        let mut seen = Seen(vec![false; self.pages as usize]);
        let mut errors = Vec::new();
        match self.kind {
            Kind::Hash => {
                // Every bucket owns at least one page, so more buckets than pages is a lie.
                let buckets = self.max_bucket.min(self.pages);
                for bucket in 0..=buckets {
                    let bits = (u32::BITS - bucket.leading_zeros()) as usize;
                    let first = bucket.wrapping_add(self.spares.get(bits).copied().unwrap_or(0));
                    self.chain(
                        first,
                        &[P_HASH, P_HASH_UNSORTED, P_HASHMETA],
                        &mut seen,
                        &mut |n, p| self.hash_page(n, p, emit),
                        &mut |e| errors.push(e),
                    );
                }
            }
            Kind::Btree => match self.leftmost_leaf(&mut seen) {
                Ok(first) => self.chain(
                    first,
                    &[P_LBTREE],
                    &mut seen,
                    &mut |n, p| self.btree_page(n, p, emit),
                    &mut |e| errors.push(e),
                ),
                Err(e) => errors.push(e),
            },
        }
        for e in errors {
            emit(Err(e));
        }
    }

    /// Descends from the root through each internal page's first child.
    fn leftmost_leaf(&self, seen: &mut Seen) -> Result<u32, PageError> {
        const MAX_DEPTH: usize = 64;
        let mut n = self.root;
        for _ in 0..MAX_DEPTH {
            let page = self.page(n)?;
            match page.get(25).copied().unwrap_or(0) {
                P_LBTREE => return Ok(n),
                P_IBTREE => {
                    seen.first_visit(n)?;
                    let off = self.offset(page, 0).unwrap_or(usize::MAX);
                    n = self.u32(page, off + 4).ok_or(PageError::Item {
                        page: n,
                        item: 0,
                        offset: off,
                    })?;
                }
                ty => {
                    return Err(PageError::Type {
                        page: n,
                        ty,
                        expected: "a btree page",
                    })
                }
            }
        }
        Err(PageError::TooDeep(MAX_DEPTH))
    }
}

/// Calls `on_record(package number, blob)` for every record but the counter (key 0).
pub fn read(
    bytes: &[u8],
    on_record: &mut dyn FnMut(u64, &[u8]),
    warnings: &mut Vec<String>,
) -> Result<(), BdbError> {
    let db = Db::open(bytes)?;
    db.walk(&mut |pair| {
        let problem = match pair {
            Ok((key, val)) => match key.bytes().try_into() {
                Ok(k) => {
                    let k: [u8; 4] = k;
                    let num = if db.le {
                        u32::from_le_bytes(k)
                    } else {
                        u32::from_be_bytes(k)
                    };
                    if num != 0 {
                        on_record(u64::from(num), val.bytes());
                    }
                    None
                }
                Err(_) => Some(PageError::Key(key.bytes().len())),
            },
            Err(e) => Some(e),
        };
        if let Some(e) = problem {
            warnings.push(format!("Packages (Berkeley DB): {e}"));
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_bdb() {
        let mut w = Vec::new();
        assert_eq!(
            read(&[0u8; 512], &mut |_, _| {}, &mut w),
            Err(BdbError::NoMagic)
        );
    }
}
