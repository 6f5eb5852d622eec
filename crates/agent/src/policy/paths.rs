//! Path rules: which prefixes may be read and written, checked on the *resolved* path.
//!
//! The check and the open are one operation, so nothing can change between them (no TOCTOU):
//! the allowed prefix is opened as a directory, and the rest of the path is resolved *beneath*
//! that descriptor, never through a path string that could be swapped meanwhile.
//!
//! * Fast path: `openat2(prefix_fd, rest, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` — the kernel
//!   refuses `..` above the prefix, absolute symlinks, and /proc magic links (Linux 5.6+).
//! * Careful walk: when openat2 is missing (ENOSYS, older kernels, some seccomp sandboxes), or
//!   refused something the kernel cannot tell apart from an escape (EXDEV for an absolute
//!   symlink that points back inside the prefix, ELOOP), the path is walked one component at a
//!   time with `O_PATH | O_NOFOLLOW`, holding a stack of directory descriptors: `..` pops the
//!   stack (and is refused at the prefix itself), a symlink is read through its own descriptor
//!   and spliced into the remaining components (absolute targets only when they lie under the
//!   same prefix), with at most [`SYMLINK_BUDGET`] symlinks per open. Magic links read as plain
//!   strings (`/dev/pts/0`, `pipe:[…]`), so they cannot teleport the walk.
//!
//! A prefix list containing `/` is unrestricted: the path is opened exactly as qemu-ga opens it
//! (relative paths, every symlink), which keeps the default policy byte-for-byte compatible.

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, readlinkat, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Symlinks one open may follow (the kernel's own limit is 40).
pub const SYMLINK_BUDGET: usize = 40;
/// Path components one open may walk, symlink expansions included; bounds hostile input.
const COMPONENT_BUDGET: usize = 4096;

/// How a path is resolved beneath its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// openat2 where the kernel has it, the walk otherwise.
    Auto,
    /// Always the component walk (tests, and kernels whose openat2 misbehaves).
    Walk,
}

/// Why a path could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The path leaves every allowed prefix (lexically, through `..`, or through a symlink).
    #[error("{0}")]
    Outside(String),
    /// The path is not absolute while prefixes are restricted.
    #[error("relative path '{0}' (paths must be absolute when prefixes are restricted)")]
    Relative(String),
    /// More symlinks than [`SYMLINK_BUDGET`], or too many components.
    #[error("too many levels of symbolic links")]
    Loop,
    /// The open itself failed (ENOENT, EACCES, EISDIR, ...).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A set of allowed prefixes, or everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefixes {
    /// Absolute, lexically normalized; empty means nothing is allowed.
    list: Vec<PathBuf>,
    unrestricted: bool,
}

impl Prefixes {
    pub fn new(list: &[PathBuf]) -> Self {
        let list: Vec<PathBuf> = list.iter().map(|p| normalize_lexically(p)).collect();
        let unrestricted = list.iter().any(|p| p == Path::new("/"));
        Self { list, unrestricted }
    }

    pub fn everything() -> Self {
        Self::new(&[PathBuf::from("/")])
    }

    pub fn is_unrestricted(&self) -> bool {
        self.unrestricted
    }

    pub fn list(&self) -> &[PathBuf] {
        &self.list
    }

    /// The longest prefix `path` lies under, compared component by component, and the rest.
    pub(crate) fn matching<'a>(&'a self, path: &'a Path) -> Option<(&'a Path, PathBuf)> {
        self.list
            .iter()
            .filter_map(|prefix| {
                path.strip_prefix(prefix)
                    .ok()
                    .map(|rest| (prefix.as_path(), rest.to_path_buf()))
            })
            .max_by_key(|(prefix, _)| prefix.as_os_str().len())
    }

    /// Whether an already-resolved absolute path lies under one of the prefixes.
    pub fn contains(&self, resolved: &Path) -> bool {
        self.unrestricted || self.list.iter().any(|p| resolved.starts_with(p))
    }

    /// Opens `path` with `flags` (and `mode` when creating), resolved beneath the longest
    /// matching prefix. `rule` names the rule for refusals (e.g. `read-prefixes`).
    pub fn open(
        &self,
        path: &str,
        flags: OFlag,
        mode: Mode,
        strategy: Strategy,
        rule: &str,
    ) -> Result<File, OpenError> {
        let flags = flags | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
        if self.unrestricted {
            let fd = openat(nix::fcntl::AT_FDCWD, path, flags, mode).map_err(io)?;
            return Ok(File::from(fd));
        }
        let given = Path::new(path);
        if !given.is_absolute() {
            return Err(OpenError::Relative(path.to_string()));
        }
        let Some((prefix, rest)) = self.matching(given) else {
            return Err(OpenError::Outside(format!(
                "'{path}' is outside the allowed prefixes (policy: {rule})"
            )));
        };
        open_beneath(prefix, &rest, flags, mode, strategy).map_err(|e| match e {
            OpenError::Outside(why) => OpenError::Outside(format!(
                "'{path}' resolves outside '{}': {why} (policy: {rule})",
                prefix.display()
            )),
            other => other,
        })
    }
}

fn io(errno: Errno) -> OpenError {
    OpenError::Io(std::io::Error::from(errno))
}

/// Removes `.` components and trailing slashes without touching the filesystem (`..` is kept:
/// only the resolver may interpret it).
pub fn normalize_lexically(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// Opens `rest` beneath the directory `prefix` (trusted configuration, opened as given).
pub fn open_beneath(
    prefix: &Path,
    rest: &Path,
    flags: OFlag,
    mode: Mode,
    strategy: Strategy,
) -> Result<File, OpenError> {
    let flags = flags | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
    if rest.as_os_str().is_empty() {
        // The prefix itself (which may be a file, e.g. /etc/hostname).
        let fd = openat(nix::fcntl::AT_FDCWD, prefix, flags, mode).map_err(io)?;
        return Ok(File::from(fd));
    }
    let root = openat(
        nix::fcntl::AT_FDCWD,
        prefix,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io)?;
    if strategy == Strategy::Auto {
        let how = OpenHow::new()
            .flags(flags)
            .mode(mode)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        // EAGAIN: a concurrent rename raced the lookup; the kernel asks to retry.
        for _ in 0..3 {
            match openat2(&root, rest, how) {
                Ok(fd) => return Ok(File::from(fd)),
                Err(Errno::EAGAIN) => continue,
                // The walk decides these precisely: no openat2 (ENOSYS, or a filter's EPERM
                // is not assumed), unknown flags (EINVAL/E2BIG on odd kernels), an absolute or
                // escaping symlink (EXDEV), a magic link or loop (ELOOP).
                Err(Errno::ENOSYS | Errno::EINVAL | Errno::E2BIG | Errno::EXDEV | Errno::ELOOP) => {
                    break
                }
                Err(e) => return Err(io(e)),
            }
        }
    }
    let fd = walk(root, prefix, rest, flags, mode)?;
    Ok(File::from(fd))
}

/// The component-by-component resolver (see the module documentation).
fn walk(
    root: OwnedFd,
    prefix: &Path,
    rest: &Path,
    flags: OFlag,
    mode: Mode,
) -> Result<OwnedFd, OpenError> {
    let mut pending: VecDeque<OsString> = components(rest)?;
    // stack[0] is the prefix; `..` never pops it.
    let mut stack: Vec<OwnedFd> = vec![root];
    let (mut symlinks, mut steps) = (0usize, 0usize);
    while let Some(name) = pending.pop_front() {
        steps += 1;
        if steps > COMPONENT_BUDGET {
            return Err(OpenError::Loop);
        }
        if name == ".." {
            if stack.len() == 1 {
                return Err(OpenError::Outside("'..' climbs above the prefix".into()));
            }
            stack.pop();
            continue;
        }
        let dir = stack.last().ok_or(OpenError::Loop)?;
        let last = pending.is_empty();
        if last {
            match openat(dir, name.as_os_str(), flags | OFlag::O_NOFOLLOW, mode) {
                Ok(fd) => return Ok(fd),
                // ELOOP: the final component is a symlink (O_NOFOLLOW); resolve it below.
                // ENOTDIR with O_DIRECTORY may be a symlink to a directory too.
                Err(Errno::ELOOP | Errno::ENOTDIR | Errno::EMLINK) => {}
                Err(e) => return Err(io(e)),
            }
        }
        let fd = openat(
            dir,
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io)?;
        let kind = SFlag::from_bits_truncate(fstat(&fd).map_err(io)?.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFLNK {
            symlinks += 1;
            if symlinks > SYMLINK_BUDGET {
                return Err(OpenError::Loop);
            }
            // Read through the link's own descriptor: the link that was looked at is the
            // link whose target is used.
            let target = readlinkat(&fd, "").map_err(io)?;
            let target = PathBuf::from(target);
            let mut spliced = if target.is_absolute() {
                let inside = target.strip_prefix(prefix).map_err(|_| {
                    OpenError::Outside(format!(
                        "symlink '{}' points to '{}'",
                        name.to_string_lossy(),
                        target.display()
                    ))
                })?;
                stack.truncate(1);
                components(inside)?
            } else {
                components(&target)?
            };
            spliced.extend(pending.drain(..));
            pending = spliced;
            continue;
        }
        if last {
            // Not a symlink, yet the open failed: report the real reason by opening again
            // without O_NOFOLLOW's ambiguity (the descriptor pins the same inode).
            return reopen(&fd, flags, kind);
        }
        if kind != SFlag::S_IFDIR {
            return Err(io(Errno::ENOTDIR));
        }
        stack.push(fd);
    }
    // The path ended on a directory (`.`, `..`, or all components consumed by `..`).
    let dir = stack.last().ok_or(OpenError::Loop)?;
    openat(dir, ".", flags, mode).map_err(io)
}

/// Opens the inode behind an `O_PATH` descriptor with real flags. Only directories get here
/// (a regular file opens on the first try), so this re-opens them through `.`.
fn reopen(fd: &OwnedFd, flags: OFlag, kind: SFlag) -> Result<OwnedFd, OpenError> {
    if kind == SFlag::S_IFDIR {
        let flags = flags & !(OFlag::O_CREAT | OFlag::O_NOFOLLOW);
        return openat(fd.as_fd(), ".", flags, Mode::empty()).map_err(io);
    }
    Err(io(Errno::ENOTDIR))
}

/// The components of a relative path as names (`.` dropped, `..` kept); an absolute path here
/// would be a bug in the caller, and is refused.
fn components(path: &Path) -> Result<VecDeque<OsString>, OpenError> {
    let mut out = VecDeque::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push_back(name.to_os_string()),
            Component::ParentDir => out.push_back(OsString::from("..")),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(OpenError::Outside("an absolute path inside a path".into()))
            }
        }
        if out.len() > COMPONENT_BUDGET {
            return Err(OpenError::Loop);
        }
    }
    Ok(out)
}

/// The path of an open descriptor, from /proc (for a post-open check of a resolved location).
pub fn fd_path(file: &File) -> std::io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Whether a name is safe to create as one component (no `/`, not `.`/`..`, not empty).
pub fn is_plain_name(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty() && bytes != b"." && bytes != b".." && !bytes.contains(&b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn read_all(mut file: File) -> String {
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn both_strategies_resolve_inside_and_refuse_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("allowed");
        std::fs::create_dir_all(allowed.join("sub")).unwrap();
        std::fs::write(allowed.join("sub/file"), "inside").unwrap();
        std::fs::write(dir.path().join("secret"), "outside").unwrap();
        symlink("sub/file", allowed.join("rel")).unwrap();
        symlink(allowed.join("sub/file"), allowed.join("abs")).unwrap();
        symlink("../secret", allowed.join("esc")).unwrap();
        symlink(dir.path().join("secret"), allowed.join("absesc")).unwrap();
        symlink("loop", allowed.join("loop")).unwrap();
        let prefixes = Prefixes::new(std::slice::from_ref(&allowed));
        for strategy in [Strategy::Auto, Strategy::Walk] {
            let open = |p: &Path| {
                prefixes.open(
                    &p.to_string_lossy(),
                    OFlag::O_RDONLY,
                    Mode::empty(),
                    strategy,
                    "read-prefixes",
                )
            };
            for ok in ["sub/file", "rel", "abs", "sub/../sub/file", "./sub/./file"] {
                let file = open(&allowed.join(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
                assert_eq!(read_all(file), "inside", "{ok} {strategy:?}");
            }
            for bad in ["esc", "absesc", "../secret", "sub/../../secret"] {
                let err = open(&allowed.join(bad)).err();
                assert!(
                    matches!(err, Some(OpenError::Outside(_))),
                    "{bad} {strategy:?}: {err:?}"
                );
            }
            assert!(matches!(
                open(&allowed.join("loop")),
                Err(OpenError::Loop | OpenError::Io(_))
            ));
            assert!(matches!(
                open(&dir.path().join("secret")),
                Err(OpenError::Outside(_))
            ));
        }
    }

    /// Thousands of deterministic random paths built from hostile pieces: every open either
    /// fails or yields a file whose real location is inside the prefix.
    #[test]
    fn random_paths_never_leave_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("allowed");
        std::fs::create_dir_all(allowed.join("sub/deeper")).unwrap();
        std::fs::write(allowed.join("sub/file"), "inside").unwrap();
        std::fs::write(dir.path().join("secret"), "outside").unwrap();
        symlink("..", allowed.join("up")).unwrap();
        symlink("sub", allowed.join("down")).unwrap();
        symlink(dir.path(), allowed.join("root")).unwrap();
        symlink("/proc/self/root", allowed.join("magic")).unwrap();
        symlink("a/b", allowed.join("dangling")).unwrap();
        let pieces = [
            "sub", "..", ".", "up", "down", "root", "magic", "dangling", "file", "secret",
            "deeper", "", "allowed",
        ];
        let prefixes = Prefixes::new(std::slice::from_ref(&allowed));
        let canonical = std::fs::canonicalize(&allowed).unwrap();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut opened = 0;
        for round in 0..3000 {
            let len = (next() % 6 + 1) as usize;
            let parts: Vec<&str> = (0..len)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            let path = format!("{}/{}", allowed.display(), parts.join("/"));
            let strategy = if round % 2 == 0 {
                Strategy::Auto
            } else {
                Strategy::Walk
            };
            if let Ok(file) = prefixes.open(&path, OFlag::O_RDONLY, Mode::empty(), strategy, "t") {
                let real = fd_path(&file).unwrap();
                assert!(
                    real.starts_with(&canonical),
                    "{path} opened {}",
                    real.display()
                );
                opened += 1;
            }
        }
        assert!(opened > 100, "only {opened} opens succeeded");
    }

    #[test]
    fn prefix_match_is_by_component() {
        let p = Prefixes::new(&[PathBuf::from("/srv/data/")]);
        assert!(p.matching(Path::new("/srv/data/x")).is_some());
        assert!(p.matching(Path::new("/srv/dataX/x")).is_none());
        assert!(!p.is_unrestricted());
        assert!(Prefixes::new(&[PathBuf::from("/./")]).is_unrestricted());
    }
}
