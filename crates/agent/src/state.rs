//! The state directory: what must survive an agent restart.
//!
//! Like qemu-ga, the file-handle counter is persisted so a restarted agent never hands out a
//! handle number a host client may still hold from before the restart.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// qemu-ga's first handle number.
pub const FIRST_HANDLE: i64 = 1000;
const COUNTER_FILE: &str = "porthole-agent.state";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Opens the state directory, creating it (mode 0700) if needed.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| StateError::Dir {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next handle number recorded by an earlier run, or the first one.
    pub fn load_handle_counter(&self) -> i64 {
        fs::read_to_string(self.path.join(COUNTER_FILE))
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|line| line.strip_prefix("fd_counter="))
                    .and_then(|n| n.trim().parse::<i64>().ok())
            })
            .filter(|n| *n >= FIRST_HANDLE)
            .unwrap_or(FIRST_HANDLE)
    }

    /// Records `next` as the next handle number (write to a temporary file, then rename).
    pub fn store_handle_counter(&self, next: i64) -> Result<(), StateError> {
        let path = self.path.join(COUNTER_FILE);
        let tmp = self.path.join(format!("{COUNTER_FILE}.tmp"));
        let err = |source| StateError::File {
            path: path.clone(),
            source,
        };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        file.write_all(format!("[global]\nfd_counter={next}\n").as_bytes())
            .map_err(err)?;
        fs::rename(&tmp, &path).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_survives_reopen() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let state = StateDir::open(&dir.path().join("nested/state"))?;
        assert_eq!(state.load_handle_counter(), FIRST_HANDLE);
        state.store_handle_counter(1234)?;
        let again = StateDir::open(&dir.path().join("nested/state"))?;
        assert_eq!(again.load_handle_counter(), 1234);
        Ok(())
    }
}
