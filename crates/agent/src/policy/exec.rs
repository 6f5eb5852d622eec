//! Exec rules: which programs may run (by resolved path), as which users, for how long, and how
//! much of their output is kept.
//!
//! A program is matched after PATH lookup and symlink resolution, so `ls`, `/bin/ls` and
//! `/usr/bin/ls` are the same program and `/tmp/x/ls` is not. When a program list is set, the
//! agent runs the resolved path it checked (argv[0] stays what the host asked for, for busybox
//! style multi-call binaries), so a PATH in the request cannot redirect the check.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// PATH used when neither the request nor the agent's environment has one (glibc's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// guest-exec's capture cap per stream (qemu-ga's 16 MiB), the default of `exec-max-output`.
pub const DEFAULT_MAX_OUTPUT: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRules {
    /// Canonical paths of the programs allowed; `None` allows any.
    pub programs: Option<Vec<PathBuf>>,
    /// User names a command may run as; `None` allows any.
    pub users: Option<Vec<String>>,
    /// The longest a command may run; guest-exec children are killed when it passes.
    pub max_timeout: Option<Duration>,
    /// Bytes kept of each captured stream.
    pub max_output: usize,
}

impl Default for ExecRules {
    fn default() -> Self {
        Self {
            programs: None,
            users: None,
            max_timeout: None,
            max_output: DEFAULT_MAX_OUTPUT,
        }
    }
}

/// Turns configured program entries into canonical paths: a bare name is looked up in the
/// agent's PATH. An entry that does not exist is kept as written (it can match nothing).
pub fn canonical_programs(entries: &[PathBuf]) -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    entries
        .iter()
        .map(|entry| {
            let found = if entry.components().count() == 1 && !entry.is_absolute() {
                search_path(entry.as_os_str(), &path)
            } else {
                Some(entry.clone())
            };
            match found.and_then(|p| std::fs::canonicalize(p).ok()) {
                Some(canonical) => canonical,
                None => {
                    tracing::warn!(
                        "exec-programs entry {} does not exist; it matches nothing",
                        entry.display()
                    );
                    entry.clone()
                }
            }
        })
        .collect()
}

/// What `program` names once PATH is searched (execvp's rules: a name with a `/` is used as
/// is), canonicalized. `env` is the request's environment; its PATH wins, as in guest-exec.
pub fn resolve_program(program: &str, env: Option<&[String]>) -> Option<PathBuf> {
    if program.is_empty() {
        return None;
    }
    let found = if program.contains('/') {
        Some(PathBuf::from(program))
    } else {
        let from_env = env.and_then(|vars| {
            vars.iter()
                .rev()
                .find_map(|v| v.strip_prefix("PATH=").map(|p| p.to_string()))
        });
        let path = match from_env {
            Some(p) => p.into(),
            None => std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
        };
        search_path(OsStr::new(program), &path)
    };
    found.and_then(|p| std::fs::canonicalize(p).ok())
}

/// The first executable regular file named `name` in the `:`-separated `path`.
fn search_path(name: &OsStr, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_resolve_to_the_same_program() {
        let by_name = resolve_program("sh", None);
        let by_path = resolve_program("/bin/sh", None);
        assert!(by_name.is_some());
        assert_eq!(by_name, by_path);
        assert_eq!(resolve_program("no-such-program-porthole", None), None);
        // The request's PATH is searched, not the agent's.
        assert_eq!(
            resolve_program("sh", Some(&["PATH=/nonexistent".to_string()])),
            None
        );
        assert_eq!(
            canonical_programs(&[PathBuf::from("sh")]),
            vec![by_path.unwrap()]
        );
    }
}
