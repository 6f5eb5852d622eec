//! Running real tools, caching the images they build, and in-memory devices for crafted input.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use porthole_image::{BlockDevice, MemDevice, RawImage};

/// A shared, type-erased device, as the storage crates pass them around.
pub type Dev = Arc<dyn BlockDevice>;

/// Runs `tool args` (stdin fed from `input`), failing the test with the Debian package to
/// install when the tool is missing, and with its stderr when it fails. Returns stdout.
pub fn run(tool: &str, package: &str, args: &[&str], input: Option<&str>) -> String {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {tool} ({e}): install the Debian package `{package}`")
        });
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait for tool");
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `<target dir>/test-images`, created on demand. Found from the running test binary, which
/// cargo puts in `<target dir>/<profile>/deps/`, so any `CARGO_TARGET_DIR` works.
pub fn image_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("test binary lives in <target>/<profile>/deps");
    let dir = target.join("test-images");
    std::fs::create_dir_all(&dir).expect("create test-images dir");
    dir
}

/// Returns the cached images for `recipe` (one file per name in `names`), building them with
/// `build(paths)` into a temporary directory first and renaming them into place, so a killed
/// or concurrent run never leaves a half-built image behind.
pub fn cached(recipe: &str, names: &[&str], build: impl FnOnce(&[PathBuf])) -> Vec<PathBuf> {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = DefaultHasher::new();
    recipe.hash(&mut h);
    let key = format!("{:016x}", h.finish());
    let dir = image_dir();
    let finals: Vec<PathBuf> = names
        .iter()
        .map(|n| dir.join(format!("{key}-{n}")))
        .collect();
    if finals.iter().all(|p| p.exists()) {
        return finals;
    }
    let tmp = dir.join(format!("{key}.tmp{}", std::process::id()));
    // A build that panicked earlier in this process may have left its half-made files here.
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    let temps: Vec<PathBuf> = names.iter().map(|n| tmp.join(n)).collect();
    build(&temps);
    for (t, f) in temps.iter().zip(&finals) {
        std::fs::rename(t, f).expect("rename image into cache");
    }
    let _ = std::fs::remove_dir_all(&tmp);
    finals
}

pub fn open(path: &Path) -> Dev {
    Arc::new(RawImage::open(path).expect("open image"))
}

/// Writes `data` at byte `offset` of `path` with dd (conv=notrunc), as a person would.
pub fn dd_write(path: &Path, offset: u64, data: &[u8]) {
    let src = path.with_extension(format!("chunk{offset}"));
    std::fs::write(&src, data).expect("write chunk");
    run(
        "dd",
        "coreutils",
        &[
            &format!("if={}", src.display()),
            &format!("of={}", path.display()),
            "bs=1",
            &format!("seek={offset}"),
            "conv=notrunc",
            "status=none",
        ],
        None,
    );
    std::fs::remove_file(&src).expect("remove chunk");
}

/// Makes a sparse file of `size` bytes.
pub fn truncate(path: &Path, size: u64) {
    std::fs::File::create(path)
        .and_then(|f| f.set_len(size))
        .expect("create image file");
}

/// A recognisable pattern for a place: every byte depends on the tag and the position.
pub fn pattern(tag: &str, len: usize) -> Vec<u8> {
    let seed = tag
        .bytes()
        .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(b.into()));
    (0..len as u32)
        .map(|i| (seed.wrapping_add(i.wrapping_mul(2654435761)) >> 13) as u8)
        .collect()
}

pub fn read(dev: &dyn BlockDevice, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    dev.read_exact_at(&mut buf, offset).expect("read device");
    buf
}

pub fn mem(bytes: Vec<u8>) -> Dev {
    Arc::new(MemDevice(bytes))
}

/// What `blkid -p -o export` says of an image (low-level probe, no cache): `TYPE`, `LABEL`,
/// `UUID`, ... with blkid's `\ ` escapes undone.
pub fn blkid(image: &Path) -> std::collections::BTreeMap<String, String> {
    run(
        "blkid",
        "util-linux",
        &["-p", "-o", "export", &image.to_string_lossy()],
        None,
    )
    .lines()
    .filter_map(|l| l.split_once('='))
    .map(|(k, v)| (k.to_string(), v.replace("\\ ", " ")))
    .collect()
}

/// blkid's LABEL and UUID of an image, as a filesystem's `info()` reports them.
pub fn blkid_label_uuid(image: &Path) -> (Option<String>, Option<String>) {
    let mut tags = blkid(image);
    (tags.remove("LABEL"), tags.remove("UUID"))
}
