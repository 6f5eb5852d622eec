//! Fuzz entry points (called by `crates/fs/fuzz` and by each reader's stable mutation test).
//! Every entry point must return without panicking, hanging or allocating without bound on any
//! input.

use std::sync::Arc;

use porthole_image::MemDevice;

use crate::{FileType, Filesystem};

/// At most this many entries are visited per run, so a crafted directory graph cannot keep a
/// fuzz iteration busy for long.
const MAX_VISITS: usize = 4096;
/// Bytes read from each regular file.
const READ_LIMIT: u64 = 1 << 20;

/// Opens `data` as a filesystem image (any reader whose magic matches) and walks everything it
/// can reach: every directory listed, every entry stat'ed, every file read, every link read.
pub fn fuzz_filesystem(data: &[u8]) {
    if let Ok(fs) = crate::open(Arc::new(MemDevice(data.to_vec()))) {
        walk(fs.as_ref());
    }
}

/// Visits the tree of `fs` breadth-first, ignoring errors; bounded by [`MAX_VISITS`].
pub fn walk(fs: &dyn Filesystem) {
    let _ = fs.info();
    let mut queue = vec![b"/".to_vec()];
    let mut visits = 0;
    while let Some(dir) = queue.pop() {
        let Ok(entries) = fs.read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            visits += 1;
            if visits > MAX_VISITS {
                return;
            }
            let mut path = dir.clone();
            if !path.ends_with(b"/") {
                path.push(b'/');
            }
            path.extend_from_slice(&entry.name);
            let Ok(meta) = fs.metadata(&path) else {
                continue;
            };
            let _ = fs.xattrs(&path);
            match meta.file_type {
                FileType::Directory => queue.push(path),
                FileType::Regular => {
                    let _ = fs.read_file(&path, READ_LIMIT);
                    let mut buf = [0u8; 64];
                    let _ = fs.read_at(&path, meta.size.saturating_sub(10), &mut buf);
                }
                FileType::Symlink => {
                    let _ = fs.read_link(&path);
                }
                _ => {}
            }
        }
    }
}
