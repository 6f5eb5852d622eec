//! guest-fstrim: discard unused blocks of every mounted block-device filesystem (FITRIM).
//!
//! The mounts are the freeze commands' ([`super::freeze::mounts`]). Like qemu-ga 7.2 every
//! mount gets an entry, newest mount first, with `trimmed` and `minimum` (what the kernel wrote
//! back) or an `error`: `failed to open: <strerror>`, `trim not supported` (ENOTTY, EOPNOTSUPP)
//! or `failed to trim: <strerror>`. The host's `minimum` is passed as FITRIM's `minlen`
//! unchanged (a negative value wraps, as qemu-ga's does, and the kernel refuses it).

use super::freeze::mounts;
use super::{blocking, errno_text};
use crate::agent::Agent;
use porthole_proto::commands::{FstrimArgs, FstrimPath, FstrimResult};
use porthole_proto::CommandError;
use serde_json::Value;
use std::sync::Arc;

pub async fn fstrim(_agent: Arc<Agent>, args: FstrimArgs) -> Result<Value, CommandError> {
    let minlen = args.minimum.unwrap_or(0) as u64;
    blocking(move || {
        tracing::info!("guest-fstrim called");
        let mut paths: Vec<FstrimPath> = mounts::list()?
            .iter()
            .map(|mount| trim_one(&mount.dir, minlen))
            .collect();
        paths.reverse();
        super::to_value(FstrimResult { paths })
    })
    .await
}

fn trim_one(dir: &str, minlen: u64) -> FstrimPath {
    let mut entry = FstrimPath {
        path: dir.to_string(),
        trimmed: None,
        minimum: None,
        error: None,
    };
    let file = match std::fs::File::open(dir) {
        Ok(file) => file,
        Err(e) => {
            entry.error = Some(format!("failed to open: {}", errno_text(&e)));
            return entry;
        }
    };
    match mounts::trim(&file, minlen) {
        Ok(range) => {
            entry.minimum = Some(range.minlen);
            entry.trimmed = Some(range.len);
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EOPNOTSUPP)) => {
            entry.error = Some("trim not supported".into());
        }
        Err(e) => entry.error = Some(format!("failed to trim: {}", errno_text(&e))),
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_mount_point_is_an_entry_not_a_failure() {
        let entry = trim_one("/nonexistent-porthole-mount", 0);
        assert_eq!(
            entry.error.as_deref(),
            Some("failed to open: No such file or directory")
        );
        assert_eq!((entry.trimmed, entry.minimum), (None, None));
    }
}
