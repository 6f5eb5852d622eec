//! A bounded cache of decoded metadata and clusters, shared by every image of one chain.
//!
//! Keys name the image (an id handed out by the cache), the kind of block and its offset.
//! The total size of the cached blocks never exceeds the cap: when an insert passes it, the
//! least recently used quarter is dropped, which keeps eviction amortised O(1) without a linked
//! list. Blocks larger than the cap are returned uncached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::Result;

/// Default memory cap of the cache of one opened image chain.
pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Key {
    pub image: u64,
    pub kind: u8,
    pub offset: u64,
}

#[derive(Debug)]
struct Entry {
    data: Arc<[u8]>,
    used: u64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Key, Entry>,
    bytes: usize,
    tick: u64,
}

/// Hit and miss counts, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub bytes: usize,
}

pub struct Cache {
    inner: Mutex<Inner>,
    cap: usize,
    next_id: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("cap", &self.cap)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Cache {
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Mutex::default(),
            cap,
            next_id: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// A fresh image id for keys.
    pub(crate) fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: self.lock().bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns the cached block for `key`, loading it with `load` (outside the lock) on a miss.
    pub(crate) fn get_or_load(
        &self,
        key: Key,
        load: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Arc<[u8]>> {
        {
            let mut inner = self.lock();
            inner.tick += 1;
            let tick = inner.tick;
            if let Some(e) = inner.map.get_mut(&key) {
                e.used = tick;
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(e.data.clone());
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let data: Arc<[u8]> = load()?.into();
        if data.len() <= self.cap {
            self.insert(key, data.clone());
        }
        Ok(data)
    }

    fn insert(&self, key: Key, data: Arc<[u8]>) {
        let mut inner = self.lock();
        let len = data.len();
        let used = inner.tick;
        if let Some(old) = inner.map.insert(key, Entry { data, used }) {
            inner.bytes -= old.data.len();
        }
        inner.bytes += len;
        if inner.bytes > self.cap {
            evict(&mut inner, self.cap / 4 * 3);
        }
    }
}

/// Drops least recently used blocks until at most `target` bytes remain.
fn evict(inner: &mut Inner, target: usize) {
    let mut ages: Vec<(u64, Key, usize)> = inner
        .map
        .iter()
        .map(|(k, e)| (e.used, *k, e.data.len()))
        .collect();
    ages.sort_unstable_by_key(|a| a.0);
    for (_, key, len) in ages {
        if inner.bytes <= target {
            break;
        }
        inner.map.remove(&key);
        inner.bytes -= len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_under_cap_and_keeps_recent_blocks() -> Result<()> {
        let cache = Cache::new(10_000);
        let key = |offset| Key {
            image: 0,
            kind: 0,
            offset,
        };
        for i in 0..100 {
            cache.get_or_load(key(i), || Ok(vec![i as u8; 1000]))?;
            // Block 0 stays hot.
            cache.get_or_load(key(0), || Ok(vec![0; 1000]))?;
            assert!(cache.stats().bytes <= 10_000);
        }
        let misses = cache.stats().misses;
        cache.get_or_load(key(0), || panic!("block 0 was evicted"))?;
        cache.get_or_load(key(99), || panic!("block 99 was evicted"))?;
        assert_eq!(cache.stats().misses, misses);
        // Too big to cache: returned, not kept.
        let big = cache.get_or_load(key(1000), || Ok(vec![1; 20_000]))?;
        assert_eq!(big.len(), 20_000);
        assert!(cache.stats().bytes <= 10_000);
        Ok(())
    }
}
