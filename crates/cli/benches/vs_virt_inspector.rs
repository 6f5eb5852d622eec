//! `porthole inspect --format xml` against Debian's virt-inspector on the same phony guests:
//! wall time and peak RSS of each, and the ratios.
//!
//!     cargo bench -p porthole-cli --bench vs_virt_inspector
//!
//! Each run is measured by a fresh child of this binary (`--measure PROGRAM ARGS...`), which
//! starts the tool, waits for it and reports `getrusage(RUSAGE_CHILDREN).ru_maxrss`: the peak
//! RSS of the largest process among the tool and its waited-for descendants, so for
//! virt-inspector it covers the appliance's qemu. virt-inspector runs in the environment
//! `porthole_testkit::libguestfs` prepares (direct backend, TCG unless
//! `LIBGUESTFS_BACKEND_SETTINGS` says otherwise, appliance cached under
//! `<target>/libguestfs`); one unmeasured run first builds that cache. `RUNS` (default 3) sets
//! the runs per tool and guest; the median is reported.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use porthole_inspect::fuzzing::empty_hive;
use porthole_testkit::guests;
use porthole_testkit::libguestfs::{virt_inspector_command, virt_inspector_xml};

/// The guests measured, with the flags both tools get (see tests/virt_inspector.rs for why
/// the LVM guest is inspected without applications).
fn guests() -> Vec<(&'static str, Vec<PathBuf>, &'static [&'static str])> {
    vec![
        (
            "gpt_ext4_esp (this host's dpkg db)",
            vec![guests::gpt_ext4_esp_guest().0],
            &[],
        ),
        (
            "lvm_xfs_btrfs (--no-applications)",
            guests::lvm_xfs_btrfs_guest(),
            &["--no-applications"],
        ),
        (
            "fedora_lvm (rpmdb.sqlite)",
            guests::rpm::fedora_lvm_guest().disks,
            &[],
        ),
        (
            "centos7_bdb (Berkeley DB)",
            guests::rpm::centos7_guest(guests::rpm::Damage::None).disks,
            &[],
        ),
        (
            "windows (NTFS, hives)",
            vec![guests::windows::server_2022_guest(&empty_hive("ROOT"))],
            &[],
        ),
    ]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--measure") {
        return measure_child(&args[at + 1..]);
    }
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` asks; there is nothing to test quickly here.
    }
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    let guests = guests();
    // Builds the appliance cache (and downloads a kernel if needed) outside the measurements.
    let _ = virt_inspector_xml(&guests[0].1, &["--no-applications"]);

    println!("median of {runs} runs each; peak RSS = getrusage(RUSAGE_CHILDREN).ru_maxrss");
    println!(
        "{:<36} {:>12} {:>12} {:>8} {:>12} {:>12} {:>8}",
        "guest", "v-i wall s", "porthole s", "speedup", "v-i RSS", "porthole RSS", "RSS ×"
    );
    for (name, disks, flags) in &guests {
        let theirs = median(runs, || {
            let command = virt_inspector_command(disks, &[&["--no-icon"], *flags].concat());
            measure(command)
        });
        let ours = median(runs, || {
            let mut command = Command::new(env!("CARGO_BIN_EXE_porthole"));
            command
                .args(["inspect", "--format", "xml"])
                .args(*flags)
                .args(disks);
            measure(command)
        });
        println!(
            "{:<36} {:>12.2} {:>12.4} {:>7.0}× {:>8.1} MiB {:>8.1} MiB {:>7.0}×",
            name,
            theirs.0,
            ours.0,
            theirs.0 / ours.0,
            theirs.1 as f64 / 1024.0,
            ours.1 as f64 / 1024.0,
            theirs.1 as f64 / ours.1 as f64
        );
    }
}

/// Runs `f` `runs` times; the run with the median wall time.
fn median(runs: usize, mut f: impl FnMut() -> (f64, u64)) -> (f64, u64) {
    let mut results: Vec<(f64, u64)> = (0..runs).map(|_| f()).collect();
    results.sort_by(|a, b| a.0.total_cmp(&b.0));
    results[runs / 2]
}

/// Runs `command` under a `--measure` child of this binary; (wall seconds, peak RSS KiB).
fn measure(command: Command) -> (f64, u64) {
    let mut child = Command::new(std::env::current_exe().expect("this binary"));
    child.arg("--measure").arg(command.get_program());
    child.args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(v) => child.env(key, v),
            None => child.env_remove(key),
        };
    }
    let out = child.output().expect("run the measuring child");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{command:?} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut fields = text.split_whitespace();
    let wall = fields.next().and_then(|f| f.parse().ok());
    let rss = fields.next().and_then(|f| f.parse().ok());
    match (wall, rss) {
        (Some(wall), Some(rss)) => (wall, rss),
        _ => panic!("the measuring child printed {text:?}"),
    }
}

/// The `--measure` child: runs `program args`, output discarded, and prints its wall time
/// in seconds and the largest peak RSS among its waited-for descendants in KiB.
fn measure_child(command: &[String]) {
    let (program, args) = command.split_first().expect("--measure PROGRAM ARGS...");
    let start = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let wall = start.elapsed().as_secs_f64();
    assert!(status.success(), "{program} {args:?} failed: {status}");
    // SAFETY: getrusage only writes the struct it is given, which lives on this stack frame.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage failed");
    println!("{wall} {}", usage.ru_maxrss);
}
