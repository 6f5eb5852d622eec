//! B-tree blocks and a cursor over their items.
//!
//! Every btrfs tree (chunk, root, FS trees) is a B-tree of `nodesize` blocks: internal nodes hold
//! (key, child pointer) pairs, leaves hold (key, offset, size) item headers with the item data
//! packed at the end of the block. Hostile trees are contained by three rules: a child's level
//! must be exactly its parent's minus one (so a block pointing to itself or an ancestor fails and
//! every descent is at most [`MAX_LEVEL`] deep), keys met by a cursor must strictly increase (so
//! a block reachable twice cannot make a walk revisit items), and each cursor may read at most
//! [`MAX_NODE_READS`] blocks.

use std::cmp::Ordering;
use std::sync::Arc;

use super::bytes::{corrupt, limit, slice, u32_at, u64_at, u8_at};
use super::volume::Volume;
use crate::Result;

/// btrfs trees have at most 8 levels (0 = leaf, 7 = highest root).
pub(super) const MAX_LEVEL: u8 = 7;
/// Blocks one cursor may read before giving up.
const MAX_NODE_READS: u32 = 1 << 16;
const HEADER: usize = 0x65;
const LEAF_ITEM: usize = 25;
const KEY_PTR: usize = 33;

/// A disk key: items sort by (objectid, type, offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    pub objectid: u64,
    pub kind: u8,
    pub offset: u64,
}

impl Key {
    pub const fn new(objectid: u64, kind: u8, offset: u64) -> Self {
        Key {
            objectid,
            kind,
            offset,
        }
    }

    /// Parses a 17-byte disk key.
    pub fn parse(b: &[u8]) -> Option<Key> {
        Some(Key {
            objectid: u64_at(b, 0)?,
            kind: u8_at(b, 8)?,
            offset: u64_at(b, 9)?,
        })
    }
}

/// Where a tree's root block is.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tree {
    pub root: u64,
    pub level: u8,
}

/// One verified tree block.
#[derive(Debug)]
pub(super) struct Node {
    buf: Vec<u8>,
    logical: u64,
    level: u8,
    items: usize,
}

impl Node {
    /// Checks the header: position, filesystem, level and item count.
    pub fn parse(buf: Vec<u8>, logical: u64, fsid: &[u8; 16]) -> Result<Node> {
        let bad = |what: String| corrupt(logical, format!("tree block: {what}"));
        let bytenr = u64_at(&buf, 0x30).ok_or_else(|| bad("truncated".into()))?;
        if bytenr != logical {
            return Err(bad(format!("header says it lives at {bytenr:#x}")));
        }
        if slice(&buf, 0x20, 16) != Some(&fsid[..]) {
            return Err(bad("belongs to another filesystem (fsid mismatch)".into()));
        }
        let items = u32_at(&buf, 0x60).ok_or_else(|| bad("truncated".into()))? as usize;
        let level = u8_at(&buf, 0x64).ok_or_else(|| bad("truncated".into()))?;
        if level > MAX_LEVEL {
            return Err(bad(format!("level {level} exceeds {MAX_LEVEL}")));
        }
        let each = if level == 0 { LEAF_ITEM } else { KEY_PTR };
        if HEADER + items * each > buf.len() {
            return Err(bad(format!("{items} items do not fit the block")));
        }
        Ok(Node {
            buf,
            logical,
            level,
            items,
        })
    }

    pub fn check_level(&self, want: u8) -> Result<()> {
        if self.level == want {
            Ok(())
        } else {
            Err(corrupt(
                self.logical,
                format!("tree block has level {}, expected {want}", self.level),
            ))
        }
    }

    fn key(&self, i: usize) -> Key {
        let each = if self.level == 0 { LEAF_ITEM } else { KEY_PTR };
        // In range: `parse` checked that every item header fits.
        slice(&self.buf, HEADER + i * each, 17)
            .and_then(Key::parse)
            .unwrap_or(Key::new(0, 0, 0))
    }

    fn child(&self, i: usize) -> u64 {
        u64_at(&self.buf, HEADER + i * KEY_PTR + 17).unwrap_or(0)
    }

    /// The data of leaf item `i`.
    fn data(&self, i: usize) -> Result<&[u8]> {
        let at = HEADER + i * LEAF_ITEM;
        let off = u32_at(&self.buf, at + 17).unwrap_or(0) as usize;
        let size = u32_at(&self.buf, at + 21).unwrap_or(0) as usize;
        slice(&self.buf, HEADER + off, size).ok_or_else(|| {
            corrupt(
                self.logical,
                format!("leaf item {i}: data ({size} bytes at {off}) outside the block"),
            )
        })
    }

    /// The last slot whose key is `<= key` (0 when every key is greater).
    fn slot_le(&self, key: &Key) -> usize {
        let (mut lo, mut hi) = (0, self.items);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.key(mid).cmp(key) {
                Ordering::Greater => hi = mid,
                _ => lo = mid + 1,
            }
        }
        lo.saturating_sub(1)
    }
}

/// A position in a tree: the path of blocks from the root to a leaf slot.
pub(super) struct Cursor<'a> {
    vol: &'a Volume,
    path: Vec<(Arc<Node>, usize)>,
    reads: u32,
    last: Option<Key>,
}

impl<'a> Cursor<'a> {
    /// Positions at the last item `<= key`, or at the first item when all are greater (callers
    /// check the keys they get).
    pub fn seek(vol: &'a Volume, tree: Tree, key: Key) -> Result<Self> {
        let mut c = Cursor {
            vol,
            path: Vec::new(),
            reads: 0,
            last: None,
        };
        let mut node = c.read(tree.root, tree.level)?;
        loop {
            let slot = node.slot_le(&key);
            let level = node.level;
            c.path.push((node.clone(), slot));
            if level == 0 {
                break;
            }
            node = c.read(node.child(slot), level - 1)?;
        }
        c.settle()?;
        Ok(c)
    }

    /// Positions at the first item `>= key`.
    pub fn seek_ge(vol: &'a Volume, tree: Tree, key: Key) -> Result<Self> {
        let mut c = Self::seek(vol, tree, key)?;
        if c.current().is_some_and(|(k, _)| k < key) {
            c.next()?;
        }
        Ok(c)
    }

    fn read(&mut self, logical: u64, level: u8) -> Result<Arc<Node>> {
        self.reads += 1;
        if self.reads > MAX_NODE_READS {
            return Err(limit("tree blocks read by one walk", MAX_NODE_READS.into()));
        }
        self.vol.node(logical, level)
    }

    /// The item under the cursor, or `None` past the end.
    pub fn current(&self) -> Option<(Key, &[u8])> {
        let (leaf, slot) = self.path.last()?;
        if *slot >= leaf.items {
            return None;
        }
        Some((leaf.key(*slot), leaf.data(*slot).ok()?))
    }

    /// The logical address of the leaf under the cursor (for error messages).
    pub fn node_logical(&self) -> u64 {
        self.path.last().map_or(0, |(n, _)| n.logical)
    }

    /// Moves to the next item; past the end `current` is `None`.
    pub fn next(&mut self) -> Result<()> {
        if let Some((_, slot)) = self.path.last_mut() {
            *slot += 1;
        }
        self.settle()
    }

    /// Climbs and descends until the cursor is on an existing item or past the end, then checks
    /// the item: data inside its block, key greater than the previous one.
    fn settle(&mut self) -> Result<()> {
        loop {
            let Some((leaf, slot)) = self.path.last() else {
                return Ok(());
            };
            if *slot < leaf.items {
                break;
            }
            // Leaf exhausted: find the nearest ancestor with a next child.
            let depth = self.path.len();
            let mut up = depth - 1;
            loop {
                if up == 0 {
                    self.path.clear();
                    return Ok(());
                }
                up -= 1;
                let (node, slot) = &mut self.path[up];
                *slot += 1;
                if *slot < node.items {
                    break;
                }
            }
            self.path.truncate(up + 1);
            // Descend along first children back to a leaf.
            loop {
                let (node, slot) = &self.path[self.path.len() - 1];
                if node.level == 0 {
                    break;
                }
                let (logical, level) = (node.child(*slot), node.level - 1);
                let child = self.read(logical, level)?;
                self.path.push((child, 0));
            }
        }
        let (leaf, slot) = &self.path[self.path.len() - 1];
        let key = leaf.key(*slot);
        leaf.data(*slot)?;
        if self.last.is_some_and(|last| key <= last) {
            return Err(corrupt(
                leaf.logical,
                format!("tree keys out of order at item {slot} ({key:?})"),
            ));
        }
        self.last = Some(key);
        Ok(())
    }
}
