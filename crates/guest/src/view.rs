//! [`GuestView`]: one read-only tree across a guest's filesystems, with paths resolved the way
//! the guest's kernel would resolve them.
//!
//! Resolution walks one component at a time (like Linux's namei): at each step the longest
//! mountpoint that is a prefix of the path so far picks the filesystem, and a symlink is replaced
//! by its target. An absolute target restarts at the *guest's* root, never the host's; `..` is
//! physical (it undoes the link's target, not the link). More than [`MAX_SYMLINKS`] links in one
//! resolution is a loop (ELOOP), so a hostile image cannot make it spin.

use std::collections::VecDeque;
use std::sync::Arc;

use porthole_fs::{DirEntry, FileType, Filesystem, Metadata};

use crate::Error;

/// Linux's limit on symlinks followed in one path resolution.
pub const MAX_SYMLINKS: usize = 40;
/// Linux's PATH_MAX: longer link targets are refused rather than expanded.
pub const MAX_PATH: usize = 4096;

/// A filesystem attached at a guest path.
#[derive(Debug, Clone)]
pub struct Mount {
    /// The guest path, normalised (`/`, `/boot`, `/home`).
    pub mountpoint: String,
    /// The device the filesystem came from (`/dev/sda1`, `/dev/vg/root`).
    pub device: String,
    /// The filesystem type (`ext4`, `xfs`, `btrfs`, `vfat`, `ntfs`).
    pub fstype: String,
    /// The directory inside the filesystem that appears at the mountpoint (`/` unless a btrfs
    /// subvolume or a bind mount says otherwise).
    pub root: Vec<u8>,
    pub fs: Arc<dyn Filesystem>,
}

impl Mount {
    fn components(&self) -> Vec<Vec<u8>> {
        components(self.mountpoint.as_bytes())
    }
}

/// Where a guest path ended up.
#[derive(Debug, Clone)]
struct Resolved {
    mount: usize,
    /// The path inside the mount's filesystem.
    inner: Vec<u8>,
    /// The canonical guest path.
    guest: Vec<Vec<u8>>,
}

/// A guest's filesystems assembled into one tree.
#[derive(Debug, Clone)]
pub struct GuestView {
    /// Deepest mountpoint first, so the first prefix match is the right one.
    mounts: Vec<Mount>,
}

/// The non-empty components of a path other than `.`.
fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

fn join(components: &[Vec<u8>]) -> Vec<u8> {
    if components.is_empty() {
        return b"/".to_vec();
    }
    let mut out = Vec::new();
    for c in components {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    out
}

fn shown(components: &[Vec<u8>]) -> String {
    String::from_utf8_lossy(&join(components)).into_owned()
}

impl GuestView {
    /// A view of `mounts`; one of them should be at `/`.
    pub fn new(mut mounts: Vec<Mount>) -> Self {
        for m in &mut mounts {
            m.mountpoint =
                String::from_utf8_lossy(&join(&components(m.mountpoint.as_bytes()))).into_owned();
        }
        mounts.sort_by(|a, b| {
            (b.components().len(), &b.mountpoint).cmp(&(a.components().len(), &a.mountpoint))
        });
        Self { mounts }
    }

    /// The mounts, shortest mountpoint first (the order `mount` would list them).
    pub fn mounts(&self) -> impl Iterator<Item = &Mount> {
        self.mounts.iter().rev()
    }

    /// The mount covering `guest` and the matching path inside its filesystem.
    fn locate(&self, guest: &[Vec<u8>]) -> Result<(usize, Vec<u8>), Error> {
        for (index, mount) in self.mounts.iter().enumerate() {
            let at = mount.components();
            if guest.starts_with(&at) {
                let mut inner = components(&mount.root);
                inner.extend_from_slice(&guest[at.len()..]);
                return Ok((index, join(&inner)));
            }
        }
        Err(Error::NotFound { path: shown(guest) })
    }

    fn fs_error(path: &[Vec<u8>], error: porthole_fs::Error) -> Error {
        let path = shown(path);
        match error {
            porthole_fs::Error::NotFound { .. } => Error::NotFound { path },
            porthole_fs::Error::NotADirectory { .. } => Error::NotADirectory { path },
            source => Error::Fs { path, source },
        }
    }

    /// Resolves `path` (relative paths are taken from `/`), following symlinks in every
    /// component but the last, and in the last too when `follow_last`.
    fn resolve(&self, path: &[u8], follow_last: bool) -> Result<(Resolved, Metadata), Error> {
        let mut done: Vec<Vec<u8>> = Vec::new();
        let mut todo: VecDeque<Vec<u8>> = components(path).into();
        let mut links = 0;
        let (mount, inner) = self.locate(&done)?;
        let mut meta = self.mounts[mount]
            .fs
            .metadata(&inner)
            .map_err(|e| Self::fs_error(&done, e))?;
        while let Some(component) = todo.pop_front() {
            if meta.file_type != FileType::Directory {
                return Err(Error::NotADirectory { path: shown(&done) });
            }
            if component == b".." {
                done.pop();
            } else {
                done.push(component);
            }
            let (mount, inner) = self.locate(&done)?;
            let fs = &self.mounts[mount].fs;
            meta = fs.metadata(&inner).map_err(|e| Self::fs_error(&done, e))?;
            if meta.file_type != FileType::Symlink || (todo.is_empty() && !follow_last) {
                continue;
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Error::SymlinkLoop { path: shown(&done) });
            }
            let target = fs.read_link(&inner).map_err(|e| Self::fs_error(&done, e))?;
            if target.len() > MAX_PATH || target.is_empty() {
                return Err(Error::BadSymlink {
                    path: shown(&done),
                    len: target.len(),
                });
            }
            done.pop();
            if target.starts_with(b"/") {
                done.clear();
            }
            for c in components(&target).into_iter().rev() {
                todo.push_front(c);
            }
            // The directory the link sits in (or the root) is where resolution goes on.
            let (mount, inner) = self.locate(&done)?;
            meta = self.mounts[mount]
                .fs
                .metadata(&inner)
                .map_err(|e| Self::fs_error(&done, e))?;
        }
        let (mount, inner) = self.locate(&done)?;
        Ok((
            Resolved {
                mount,
                inner,
                guest: done,
            },
            meta,
        ))
    }

    /// lstat: the last component is not followed.
    pub fn lstat(&self, path: &[u8]) -> Result<Metadata, Error> {
        self.resolve(path, false).map(|(_, meta)| meta)
    }

    /// stat: symlinks are followed, inside the guest.
    pub fn stat(&self, path: &[u8]) -> Result<Metadata, Error> {
        self.resolve(path, true).map(|(_, meta)| meta)
    }

    /// Whether `path` exists (after following symlinks).
    pub fn exists(&self, path: &[u8]) -> bool {
        self.stat(path).is_ok()
    }

    /// The canonical guest path of `path`: no symlinks, `.` or `..`.
    pub fn canonicalize(&self, path: &[u8]) -> Result<String, Error> {
        self.resolve(path, true).map(|(r, _)| shown(&r.guest))
    }

    /// The mount that holds `path` (after following symlinks).
    pub fn mount_of(&self, path: &[u8]) -> Result<&Mount, Error> {
        self.resolve(path, true).map(|(r, _)| &self.mounts[r.mount])
    }

    /// Lists a directory (following symlinks), without `.` and `..`.
    pub fn read_dir(&self, path: &[u8]) -> Result<Vec<DirEntry>, Error> {
        let (r, meta) = self.resolve(path, true)?;
        if meta.file_type != FileType::Directory {
            return Err(Error::NotADirectory {
                path: shown(&r.guest),
            });
        }
        self.mounts[r.mount]
            .fs
            .read_dir(&r.inner)
            .map_err(|e| Self::fs_error(&r.guest, e))
    }

    /// The target of the symlink at `path`, as stored.
    pub fn read_link(&self, path: &[u8]) -> Result<Vec<u8>, Error> {
        let (r, _) = self.resolve(path, false)?;
        self.mounts[r.mount]
            .fs
            .read_link(&r.inner)
            .map_err(|e| Self::fs_error(&r.guest, e))
    }

    /// Reads up to `buf.len()` bytes of the file at `path` from `offset`.
    pub fn read_at(&self, path: &[u8], offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        let (r, _) = self.resolve(path, true)?;
        self.mounts[r.mount]
            .fs
            .read_at(&r.inner, offset, buf)
            .map_err(|e| Self::fs_error(&r.guest, e))
    }

    /// Reads a whole file (following symlinks), refusing files over `limit` bytes.
    pub fn read_file(&self, path: &[u8], limit: u64) -> Result<Vec<u8>, Error> {
        let (r, _) = self.resolve(path, true)?;
        self.mounts[r.mount]
            .fs
            .read_file(&r.inner, limit)
            .map_err(|e| Self::fs_error(&r.guest, e))
    }
}

#[cfg(test)]
mod tests {
    //! Path resolution over a small in-memory filesystem: the logic here is the guest's
    //! kernel's, independent of any on-disk format (the integration tests use real images).
    use super::*;
    use porthole_fs::{FsInfo, FsKind};
    use std::collections::BTreeMap;

    #[derive(Debug, Default)]
    struct MemFs {
        /// path -> (type, contents or link target)
        nodes: BTreeMap<Vec<u8>, (FileType, Vec<u8>)>,
    }

    impl MemFs {
        fn with(entries: &[(&str, FileType, &str)]) -> Arc<dyn Filesystem> {
            let mut fs = MemFs::default();
            fs.nodes
                .insert(b"/".to_vec(), (FileType::Directory, Vec::new()));
            for (path, kind, data) in entries {
                fs.nodes
                    .insert(path.as_bytes().to_vec(), (*kind, data.as_bytes().to_vec()));
            }
            Arc::new(fs)
        }

        fn node(&self, path: &[u8]) -> porthole_fs::Result<&(FileType, Vec<u8>)> {
            self.nodes.get(path).ok_or(porthole_fs::Error::NotFound {
                path: String::from_utf8_lossy(path).into_owned(),
            })
        }
    }

    impl Filesystem for MemFs {
        fn info(&self) -> FsInfo {
            FsInfo {
                kind: FsKind::Ext4,
                label: None,
                uuid: None,
            }
        }
        fn metadata(&self, path: &[u8]) -> porthole_fs::Result<Metadata> {
            let (file_type, data) = self.node(path)?;
            Ok(Metadata {
                file_type: *file_type,
                mode: 0o755,
                uid: 0,
                gid: 0,
                size: data.len() as u64,
                nlink: 1,
                mtime: None,
                ino: 1,
            })
        }
        fn read_dir(&self, path: &[u8]) -> porthole_fs::Result<Vec<DirEntry>> {
            let prefix = if path == b"/" {
                b"/".to_vec()
            } else {
                [path, b"/"].concat()
            };
            Ok(self
                .nodes
                .iter()
                .filter_map(|(p, (t, _))| {
                    let rest = p.strip_prefix(prefix.as_slice())?;
                    (!rest.is_empty() && !rest.contains(&b'/')).then(|| DirEntry {
                        name: rest.to_vec(),
                        file_type: *t,
                        ino: 1,
                    })
                })
                .collect())
        }
        fn read_at(&self, path: &[u8], offset: u64, buf: &mut [u8]) -> porthole_fs::Result<usize> {
            let (_, data) = self.node(path)?;
            let start = (offset as usize).min(data.len());
            let n = buf.len().min(data.len() - start);
            buf[..n].copy_from_slice(&data[start..start + n]);
            Ok(n)
        }
        fn read_link(&self, path: &[u8]) -> porthole_fs::Result<Vec<u8>> {
            match self.node(path)? {
                (FileType::Symlink, target) => Ok(target.clone()),
                _ => Err(porthole_fs::Error::NotASymlink {
                    path: String::from_utf8_lossy(path).into_owned(),
                }),
            }
        }
    }

    use FileType::{Directory as D, Regular as F, Symlink as L};

    fn mount(at: &str, root: &str, fs: Arc<dyn Filesystem>) -> Mount {
        Mount {
            mountpoint: at.to_string(),
            device: format!("dev{at}"),
            fstype: "ext4".to_string(),
            root: root.as_bytes().to_vec(),
            fs,
        }
    }

    fn guest() -> GuestView {
        let root = MemFs::with(&[
            ("/etc", D, ""),
            ("/etc/hostname", F, "root-fs\n"),
            ("/etc/alt", L, "/boot/grub"),
            ("/etc/up", L, "../boot/../etc/hostname"),
            ("/etc/loop-a", L, "loop-b"),
            ("/etc/loop-b", L, "/etc/loop-a"),
            ("/etc/escape", L, "../../../../../etc/hostname"),
            ("/boot", D, ""),
            ("/boot/hidden", F, "covered by the boot mount\n"),
            ("/home", D, ""),
            ("/bin", L, "usr/bin"),
            ("/usr", D, ""),
            ("/usr/bin", D, ""),
            ("/usr/bin/ls", F, "ELF"),
        ]);
        let boot = MemFs::with(&[("/grub", D, ""), ("/grub/grub.cfg", F, "menuentry\n")]);
        let home = MemFs::with(&[
            ("/@home", D, ""),
            ("/@home/alice", D, ""),
            ("/@home/alice/note", F, "hi\n"),
            ("/@other", D, ""),
        ]);
        GuestView::new(vec![
            mount("/", "/", root),
            mount("/boot/", "/", boot),
            mount("/home", "/@home", home),
        ])
    }

    fn text(view: &GuestView, path: &str) -> Result<String, Error> {
        view.read_file(path.as_bytes(), 1 << 20)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    #[test]
    fn mounts_cover_their_mountpoints() {
        let g = guest();
        assert!(matches!(
            text(&g, "/boot/hidden"),
            Err(Error::NotFound { .. })
        ));
        assert_eq!(text(&g, "/boot/grub/grub.cfg").unwrap(), "menuentry\n");
        assert_eq!(text(&g, "/home/alice/note").unwrap(), "hi\n");
        assert!(
            g.stat(b"/home/@other").is_err(),
            "subvol root hides siblings"
        );
        let names: Vec<_> = g.mounts().map(|m| m.mountpoint.clone()).collect();
        assert_eq!(names, ["/", "/boot", "/home"]);
        assert_eq!(g.mount_of(b"/boot/grub").unwrap().device, "dev/boot/");
    }

    #[test]
    fn symlinks_resolve_inside_the_guest() {
        let g = guest();
        // An absolute link crosses into another mount; a relative one with `..` is physical.
        assert_eq!(
            g.canonicalize(b"/etc/alt/grub.cfg").unwrap(),
            "/boot/grub/grub.cfg"
        );
        assert_eq!(text(&g, "/etc/alt/grub.cfg").unwrap(), "menuentry\n");
        assert_eq!(text(&g, "/etc/up").unwrap(), "root-fs\n");
        // `..` never climbs above the guest's root.
        assert_eq!(text(&g, "/etc/escape").unwrap(), "root-fs\n");
        assert_eq!(text(&g, "/../../etc/./hostname").unwrap(), "root-fs\n");
        assert_eq!(g.canonicalize(b"/bin/ls").unwrap(), "/usr/bin/ls");
        assert_eq!(g.lstat(b"/bin").unwrap().file_type, L);
        assert_eq!(g.stat(b"/bin").unwrap().file_type, D);
        assert_eq!(g.read_link(b"/bin").unwrap(), b"usr/bin");
        let listed: Vec<_> = g
            .read_dir(b"/bin")
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(listed, [b"ls".to_vec()]);
    }

    #[test]
    fn loops_and_bad_paths_are_errors() {
        let g = guest();
        assert!(matches!(
            g.stat(b"/etc/loop-a"),
            Err(Error::SymlinkLoop { .. })
        ));
        assert_eq!(g.lstat(b"/etc/loop-a").unwrap().file_type, L);
        assert!(matches!(
            g.stat(b"/etc/hostname/x"),
            Err(Error::NotADirectory { .. })
        ));
        assert!(matches!(g.stat(b"/nope"), Err(Error::NotFound { .. })));
        assert!(matches!(
            g.read_dir(b"/etc/hostname"),
            Err(Error::NotADirectory { .. })
        ));
    }
}
