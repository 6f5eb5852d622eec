//! Offline reads through the whole stack (image format → filesystem → guest view), for every
//! image format × filesystem: stat every entry under /etc and read 1,000 small files.
//!
//!     cargo bench -p porthole-guest --bench offline_read
//!
//! Each case runs in a fresh child process (this binary re-run with `--case`), so its peak RSS
//! (VmHWM) is its own; three runs per case, the median wall time reported. Ratios are against
//! the same filesystem in a raw image, so they show what each format's layer costs. Images are
//! built once (root is needed for XFS and NTFS) and cached under `<target>/test-images`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use porthole_fs::FileType;
use porthole_guest::{Disks, GuestView};
use porthole_testkit::fsimage::{make, FsType};
use porthole_testkit::{cached, pattern, run};

/// The formats compared, with the `qemu-img convert` options that make them.
const FORMATS: &[(&str, &[&str])] = &[
    ("raw", &[]),
    ("qcow2", &["-O", "qcow2"]),
    ("qcow2-zlib", &["-O", "qcow2", "-c"]),
    ("vmdk", &["-O", "vmdk"]),
    ("vhdx", &["-O", "vhdx"]),
];
const SMALL_FILES: usize = 1000;
const RUNS: usize = 3;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--case") {
        let image = args.get(at + 1).expect("--case IMAGE");
        return run_case(Path::new(image));
    }
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` asks; there is nothing to test quickly here.
    }
    println!("stat every entry under /etc and read {SMALL_FILES} small files, per image");
    println!(
        "{:<7} {:<11} {:>10} {:>10} {:>9} {:>8}",
        "fs", "format", "wall ms", "× raw", "peak RSS", "entries"
    );
    for fs in FsType::ALL {
        let mut raw_ms = None;
        for (format, _) in FORMATS {
            let image = image(fs, format);
            let mut results: Vec<(f64, u64, u64)> = (0..RUNS).map(|_| measure(&image)).collect();
            results.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (ms, peak_kib, entries) = results[RUNS / 2];
            let base = *raw_ms.get_or_insert(ms);
            println!(
                "{:<7} {:<11} {:>10.1} {:>10.2} {:>6.1} MiB {:>8}",
                fs.name(),
                format,
                ms,
                ms / base,
                peak_kib as f64 / 1024.0,
                entries
            );
        }
    }
}

/// Runs one case in a child; returns (wall ms, peak RSS KiB, entries visited).
fn measure(image: &Path) -> (f64, u64, u64) {
    let out = Command::new(std::env::current_exe().expect("this binary"))
        .args(["--case", &image.to_string_lossy()])
        .output()
        .expect("run a case");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "case {} failed: {}{}",
        image.display(),
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    let fields: Vec<f64> = text
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    match fields[..] {
        [ms, kib, entries] => (ms, kib as u64, entries as u64),
        _ => panic!("case printed {text:?}"),
    }
}

/// The child: open, walk, read; print "wall_ms peak_kib entries".
fn run_case(image: &Path) {
    let start = Instant::now();
    let disks = Disks::open(&[image.to_path_buf()]).expect("open image");
    let view = disks.single(0).expect("one filesystem");
    let entries = walk(&view, b"/etc");
    let mut read = 0;
    for i in 0..SMALL_FILES {
        let path = format!("/data/d{}/f{i:04}", i % 10);
        read += view
            .read_file(path.as_bytes(), 1 << 20)
            .expect("small file")
            .len();
    }
    assert!(read > 0);
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    println!(
        "{ms:.3} {} {}",
        peak_rss_kib(),
        entries + SMALL_FILES as u64
    );
}

/// lstat of every entry below `dir`; returns how many.
fn walk(view: &GuestView, dir: &[u8]) -> u64 {
    let mut count = 0;
    for entry in view.read_dir(dir).expect("read_dir") {
        let mut path = dir.to_vec();
        path.push(b'/');
        path.extend_from_slice(&entry.name);
        let meta = view.lstat(&path).expect("lstat");
        count += 1;
        if meta.file_type == FileType::Directory {
            count += walk(view, &path);
        }
    }
    count
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// A tree like a small distribution's: /etc with 300 entries in nested directories, and 1,000
/// small files of 100 B to 4 KiB under /data.
fn tree(root: &Path) {
    for i in 0..300 {
        let path = root.join(format!("etc/sub{}/deeper{}/conf{i}.conf", i % 12, i % 3));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, format!("setting{i} = {i}\n")).expect("write");
    }
    for i in 0..SMALL_FILES {
        let path = root.join(format!("data/d{}/f{i:04}", i % 10));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, pattern(&format!("small{i}"), 100 + (i * 37) % 4000)).expect("write");
    }
}

/// The image of `fs` in `format`, built once.
fn image(fs: FsType, format: &str) -> PathBuf {
    let raw = cached(
        &format!("bench offline_read {} v1", fs.name()),
        &["raw.img"],
        |p| {
            let dir = p[0].with_extension("tree");
            tree(&dir);
            make(fs, &dir, &p[0], 512);
            let _ = std::fs::remove_dir_all(&dir);
        },
    )
    .remove(0);
    let Some((_, options)) = FORMATS.iter().find(|(f, _)| *f == format) else {
        panic!("unknown format {format}");
    };
    if options.is_empty() {
        return raw;
    }
    let recipe = format!("bench offline_read {} {format} v1", fs.name());
    cached(&recipe, &["image"], |p| {
        let mut args = vec!["convert"];
        args.extend_from_slice(options);
        let (src, dst) = (raw.to_string_lossy(), p[0].to_string_lossy());
        args.extend([src.as_ref(), dst.as_ref()]);
        run("qemu-img", "qemu-utils", &args, None);
    })
    .remove(0)
}
