//! The opened device: superblock, chunk map, reads by logical address and a bounded cache of
//! verified tree blocks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::bytes::crc32c;
use super::chunks::{ChunkMap, CHUNK_ITEM};
use super::items::RootItem;
use super::superblock::{self, Superblock};
use super::tree::{Cursor, Key, Node, Tree};
use crate::{Dev, Result};

/// Bytes of tree blocks kept in memory.
const CACHE_BYTES: usize = 32 << 20;

#[derive(Debug)]
pub(super) struct Volume {
    pub dev: Dev,
    pub sb: Superblock,
    pub chunks: ChunkMap,
    /// Off only for fuzzing: lets mutations reach the parsers behind the checksums.
    pub verify: bool,
    cache: Mutex<HashMap<u64, Arc<Node>>>,
    roots: Mutex<HashMap<u64, RootItem>>,
}

impl Volume {
    /// Reads the superblock and builds the chunk map (sys_chunk_array, then the chunk tree).
    pub fn open(dev: Dev, verify: bool) -> Result<Self> {
        let sb = superblock::read(&dev, verify)?;
        let mut chunks = ChunkMap::new(dev.size());
        chunks.add_sys_array(&sb.sys_chunk_array, sb.devid)?;
        let mut vol = Volume {
            dev,
            sb,
            chunks,
            verify,
            cache: Mutex::new(HashMap::new()),
            roots: Mutex::new(HashMap::new()),
        };
        let chunk_tree = Tree {
            root: vol.sb.chunk_root,
            level: vol.sb.chunk_root_level,
        };
        let mut found = Vec::new();
        let mut cursor = Cursor::seek(&vol, chunk_tree, Key::new(0, 0, 0))?;
        while let Some((key, data)) = cursor.current() {
            if key.kind == CHUNK_ITEM {
                found.push((key.offset, data.to_vec(), cursor.node_logical()));
            }
            if found.len() > 1 << 16 {
                return Err(super::bytes::limit("chunk count", 1 << 16));
            }
            cursor.next()?;
        }
        for (logical, data, at) in found {
            vol.chunks.add(logical, &data, vol.sb.devid, at)?;
        }
        Ok(vol)
    }

    /// Reads `buf.len()` bytes at logical address `logical`.
    pub fn read_logical(&self, logical: u64, buf: &mut [u8]) -> Result<()> {
        let physical = self.chunks.map(logical, buf.len() as u64)?;
        self.dev.read_exact_at(buf, physical)?;
        Ok(())
    }

    /// The tree block at `logical`, checked against `level` (its parent's level minus one).
    pub fn node(&self, logical: u64, level: u8) -> Result<Arc<Node>> {
        if let Some(n) = self.lock().get(&logical) {
            let n = n.clone();
            n.check_level(level)?;
            return Ok(n);
        }
        let mut buf = vec![0u8; self.sb.nodesize as usize];
        self.read_logical(logical, &mut buf)?;
        if self.verify {
            let stored = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let computed = crc32c(&buf[0x20..]);
            if stored != computed {
                return Err(super::bytes::corrupt(
                    logical,
                    format!("tree block checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"),
                ));
            }
        }
        let node = Arc::new(Node::parse(buf, logical, &self.sb.metadata_uuid)?);
        node.check_level(level)?;
        let mut cache = self.lock();
        if cache.len() * self.sb.nodesize as usize >= CACHE_BYTES {
            cache.clear();
        }
        cache.insert(logical, node.clone());
        Ok(node)
    }

    pub fn root_cache(&self, id: u64) -> Option<RootItem> {
        self.roots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .copied()
    }

    pub fn set_root_cache(&self, id: u64, r: RootItem) {
        let mut roots = self.roots.lock().unwrap_or_else(|e| e.into_inner());
        if roots.len() >= 4096 {
            roots.clear();
        }
        roots.insert(id, r);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Node>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}
