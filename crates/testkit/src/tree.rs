//! A reference file tree, built on the host with ordinary file operations, and a comparer that
//! walks it beside a porthole [`Filesystem`] holding the same tree (put there by mkfs.ext4 -d,
//! mkfs.btrfs --rootdir, mcopy, ...), reporting every difference in bytes, sizes, types, modes,
//! owners, link counts and link targets.
//!
//! The tree holds what breaks naive readers: files around block boundaries, a multi-megabyte file
//! (many extents), a sparse file, a 2,000-entry directory (hashed/B-tree directories), a deep
//! chain of directories, short and long symlinks, setuid and sticky modes, hard links, special
//! files, non-UTF-8 and non-ASCII names. A [`Fidelity`] leaves out what a format cannot record.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use porthole_fs::{FileType, Filesystem};

use crate::tools::{pattern, run};

/// What a filesystem format records, so the tree holds and the comparer checks only that.
#[derive(Debug, Clone, Copy)]
pub struct Fidelity {
    /// Permission bits including setuid, setgid and sticky.
    pub modes: bool,
    /// uid and gid (set only when the test runs as root).
    pub owners: bool,
    pub symlinks: bool,
    /// FIFOs and device nodes (device nodes only when root).
    pub special_files: bool,
    pub hard_links: bool,
    /// Names that are not valid UTF-8.
    pub non_utf8_names: bool,
    /// Modification times (seconds).
    pub mtimes: bool,
}

impl Fidelity {
    /// A POSIX filesystem that records everything (ext4, XFS, btrfs).
    pub const POSIX: Fidelity = Fidelity {
        modes: true,
        owners: true,
        symlinks: true,
        special_files: true,
        hard_links: true,
        non_utf8_names: true,
        mtimes: true,
    };
    /// FAT: names and bytes only.
    pub const FAT: Fidelity = Fidelity {
        modes: false,
        owners: false,
        symlinks: false,
        special_files: false,
        hard_links: false,
        non_utf8_names: false,
        mtimes: false,
    };
}

/// Whether this process may chown and mknod.
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Builds the reference tree in `root` (created; must not exist yet).
pub fn build_reference_tree(root: &Path, fidelity: Fidelity) {
    std::fs::create_dir(root).expect("create tree root");
    let file = |rel: &str, data: &[u8]| {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&path, data).expect("write tree file");
    };

    file("etc/hostname", b"porthole-test\n");
    file(
        "etc/os-release",
        b"PRETTY_NAME=\"Porthole Test 1\"\nNAME=\"Porthole Test\"\nID=porthole\n",
    );
    file("etc/fstab", b"# nothing to mount\n");
    for size in [0usize, 1, 60, 61, 511, 512, 4095, 4096, 4097, 65537] {
        file(
            &format!("sizes/file-{size}"),
            &pattern(&format!("size{size}"), size),
        );
    }
    file("data/three-mib", &pattern("three-mib", 3 << 20));
    write_sparse(&root.join("data/sparse"));

    for i in 0..2000 {
        let body = if i % 100 == 0 {
            pattern(&format!("entry{i}"), 100 + i)
        } else {
            Vec::new()
        };
        file(&format!("big-dir/entry-{i:04}-with-a-longer-name"), &body);
    }
    let deep: String = (0..12).map(|i| format!("level{i}/")).collect();
    file(&format!("{deep}bottom"), b"at the bottom\n");
    std::fs::create_dir_all(root.join("empty-dir")).expect("create empty dir");
    file(
        "names/\u{fc}n\u{ef}c\u{f8}d\u{e9}-\u{540d}\u{524d}",
        b"unicode name\n",
    );
    file("names/with space and 'quote'", b"spaces\n");

    if fidelity.non_utf8_names {
        let name = OsStr::from_bytes(b"names/latin1-\xe9t\xe9");
        std::fs::write(root.join(name), b"latin-1 name\n").expect("write non-UTF-8 name");
    }
    if fidelity.symlinks {
        symlink("sizes/file-1", &root.join("link-short"));
        symlink(
            &format!("{}target", "long/".repeat(40)),
            &root.join("link-long"),
        );
        symlink("/etc/hostname", &root.join("link-absolute"));
        symlink("nowhere", &root.join("link-dangling"));
        symlink("../etc", &root.join("data/link-dir"));
    }
    if fidelity.hard_links {
        file("links/hard-a", b"one inode, two names\n");
        std::fs::hard_link(root.join("links/hard-a"), root.join("links/hard-b"))
            .expect("hard link");
    }
    if fidelity.modes {
        file("modes/private", b"0600\n");
        set_mode(&root.join("modes/private"), 0o600);
        file("modes/setuid", b"4755\n");
        set_mode(&root.join("modes/setuid"), 0o4755);
        std::fs::create_dir_all(root.join("modes/sticky")).expect("create sticky dir");
        set_mode(&root.join("modes/sticky"), 0o1777);
    }
    if fidelity.owners && is_root() {
        file("owners/user-1000", b"owned by 1000:1001\n");
        run(
            "chown",
            "coreutils",
            &[
                "1000:1001",
                &root.join("owners/user-1000").to_string_lossy(),
            ],
            None,
        );
    }
    if fidelity.special_files {
        let fifo = root.join("special/fifo");
        std::fs::create_dir_all(root.join("special")).expect("create special dir");
        run("mkfifo", "coreutils", &[&fifo.to_string_lossy()], None);
        if is_root() {
            let null = root.join("special/null");
            run(
                "mknod",
                "coreutils",
                &[&null.to_string_lossy(), "c", "1", "3"],
                None,
            );
        }
    }
    if fidelity.mtimes {
        run(
            "touch",
            "coreutils",
            &[
                "-m",
                "-d",
                "2001-02-03 04:05:06 UTC",
                &root.join("etc/hostname").to_string_lossy(),
            ],
            None,
        );
    }
}

fn symlink(target: &str, link: &Path) {
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent).expect("create parent");
    }
    std::os::unix::fs::symlink(target, link).expect("create symlink");
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// 4 KiB of data, an 8 MiB hole, then 4 KiB more.
fn write_sparse(path: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).expect("create sparse file");
    f.write_all_at(&pattern("sparse-head", 4096), 0)
        .expect("write sparse head");
    f.write_all_at(&pattern("sparse-tail", 4096), 8 << 20)
        .expect("write sparse tail");
}

/// Walks `host` (a reference tree) and `fs` at `fs_root` together; returns every difference,
/// each naming the path. An empty list means the filesystem holds exactly the tree.
pub fn compare_tree(
    fs: &dyn Filesystem,
    fs_root: &[u8],
    host: &Path,
    fidelity: Fidelity,
) -> Vec<String> {
    let mut diffs = Vec::new();
    compare_dir(fs, fs_root, host, fidelity, &mut diffs);
    diffs
}

/// Panics listing the differences, if any.
pub fn assert_same_tree(fs: &dyn Filesystem, fs_root: &[u8], host: &Path, fidelity: Fidelity) {
    let diffs = compare_tree(fs, fs_root, host, fidelity);
    assert!(
        diffs.is_empty(),
        "{} differences between the image and {}:\n{}",
        diffs.len(),
        host.display(),
        diffs
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = dir.to_vec();
    if !path.ends_with(b"/") {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

fn compare_dir(
    fs: &dyn Filesystem,
    dir: &[u8],
    host: &Path,
    fidelity: Fidelity,
    diffs: &mut Vec<String>,
) {
    let shown = String::from_utf8_lossy(dir).into_owned();
    let listed = match fs.read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            diffs.push(format!("{shown}: read_dir failed: {e}"));
            return;
        }
    };
    let in_image: BTreeMap<Vec<u8>, FileType> = listed
        .iter()
        .map(|e| (e.name.clone(), e.file_type))
        .collect();
    if in_image.len() != listed.len() {
        diffs.push(format!("{shown}: duplicate names in the listing"));
    }
    let mut on_host = BTreeMap::new();
    for entry in std::fs::read_dir(host).expect("read host dir") {
        let entry = entry.expect("host dir entry");
        on_host.insert(entry.file_name().as_bytes().to_vec(), entry.path());
    }
    for name in in_image.keys().filter(|n| !on_host.contains_key(*n)) {
        diffs.push(format!(
            "{shown}: unexpected entry {:?}",
            String::from_utf8_lossy(name)
        ));
    }
    for (name, host_path) in &on_host {
        let path = join(dir, name);
        let Some(listed_type) = in_image.get(name) else {
            diffs.push(format!("{}: missing", String::from_utf8_lossy(&path)));
            continue;
        };
        compare_entry(fs, &path, *listed_type, host_path, fidelity, diffs);
    }
}

fn host_type(meta: &std::fs::Metadata) -> FileType {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    match () {
        _ if t.is_file() => FileType::Regular,
        _ if t.is_dir() => FileType::Directory,
        _ if t.is_symlink() => FileType::Symlink,
        _ if t.is_fifo() => FileType::Fifo,
        _ if t.is_char_device() => FileType::CharDevice,
        _ if t.is_block_device() => FileType::BlockDevice,
        _ if t.is_socket() => FileType::Socket,
        _ => FileType::Unknown,
    }
}

fn compare_entry(
    fs: &dyn Filesystem,
    path: &[u8],
    listed_type: FileType,
    host_path: &Path,
    fidelity: Fidelity,
    diffs: &mut Vec<String>,
) {
    let shown = String::from_utf8_lossy(path).into_owned();
    let host_meta = std::fs::symlink_metadata(host_path).expect("lstat host file");
    let want_type = host_type(&host_meta);
    let mut differ = |what: String| diffs.push(format!("{shown}: {what}"));
    if listed_type != want_type && listed_type != FileType::Unknown {
        differ(format!("listed as {listed_type:?}, is {want_type:?}"));
    }
    let meta = match fs.metadata(path) {
        Ok(meta) => meta,
        Err(e) => return differ(format!("metadata failed: {e}")),
    };
    if meta.file_type != want_type {
        return differ(format!("type {:?}, want {want_type:?}", meta.file_type));
    }
    if fidelity.modes && meta.mode & 0o7777 != host_meta.mode() & 0o7777 {
        differ(format!(
            "mode {:o}, want {:o}",
            meta.mode,
            host_meta.mode() & 0o7777
        ));
    }
    if fidelity.owners && (meta.uid, meta.gid) != (host_meta.uid(), host_meta.gid()) {
        differ(format!(
            "owner {}:{}, want {}:{}",
            meta.uid,
            meta.gid,
            host_meta.uid(),
            host_meta.gid()
        ));
    }
    if fidelity.hard_links && want_type == FileType::Regular && meta.nlink != host_meta.nlink() {
        differ(format!("nlink {}, want {}", meta.nlink, host_meta.nlink()));
    }
    if fidelity.mtimes && want_type == FileType::Regular && meta.mtime != Some(host_meta.mtime()) {
        differ(format!(
            "mtime {:?}, want {}",
            meta.mtime,
            host_meta.mtime()
        ));
    }
    match want_type {
        FileType::Regular => compare_contents(fs, path, host_path, meta.size, diffs),
        FileType::Directory => compare_dir(fs, path, host_path, fidelity, diffs),
        FileType::Symlink => {
            let want = std::fs::read_link(host_path).expect("read host link");
            match fs.read_link(path) {
                Ok(target) if target == want.as_os_str().as_bytes() => {}
                Ok(target) => differ(format!(
                    "link target {:?}, want {:?}",
                    String::from_utf8_lossy(&target),
                    want
                )),
                Err(e) => differ(format!("read_link failed: {e}")),
            }
        }
        _ => {}
    }
}

fn compare_contents(
    fs: &dyn Filesystem,
    path: &[u8],
    host_path: &Path,
    size: u64,
    diffs: &mut Vec<String>,
) {
    let shown = String::from_utf8_lossy(path).into_owned();
    let want = std::fs::read(host_path).expect("read host file");
    if size != want.len() as u64 {
        diffs.push(format!("{shown}: size {size}, want {}", want.len()));
    }
    match fs.read_file(path, 64 << 20) {
        Ok(got) if got == want => {}
        Ok(got) => {
            let at = got.iter().zip(&want).position(|(a, b)| a != b);
            diffs.push(format!(
                "{shown}: contents differ ({} bytes read, {} expected, first difference at {:?})",
                got.len(),
                want.len(),
                at
            ));
        }
        Err(e) => diffs.push(format!("{shown}: read failed: {e}")),
    }
    // An unaligned read in the middle, and one past the end.
    if want.len() > 5000 {
        let mut buf = vec![0u8; 3000];
        match fs.read_at(path, 4093, &mut buf) {
            Ok(n) if n == buf.len() && buf == want[4093..7093] => {}
            Ok(n) => diffs.push(format!(
                "{shown}: read_at(4093, 3000) returned {n} bytes, or wrong ones"
            )),
            Err(e) => diffs.push(format!("{shown}: read_at failed: {e}")),
        }
    }
    let mut past = [0u8; 16];
    match fs.read_at(path, want.len() as u64 + 10, &mut past) {
        Ok(0) => {}
        Ok(n) => diffs.push(format!("{shown}: read past the end returned {n} bytes")),
        Err(e) => diffs.push(format!("{shown}: read past the end failed: {e}")),
    }
}
