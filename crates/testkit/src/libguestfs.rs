//! Debian's virt-inspector (guestfs-tools 1.48 over libguestfs 1.48), the reference the
//! inspector's differential test and benchmark run beside porthole.
//!
//! virt-inspector boots libguestfs's appliance, a small VM that supermin assembles from the
//! host's own packages and kernel. This module makes that boot work on a bare build machine:
//!
//! - the `direct` backend (qemu run by libguestfs itself, no libvirtd);
//! - TCG unless the caller's environment already sets `LIBGUESTFS_BACKEND_SETTINGS`: on the
//!   project's machines `/dev/kvm` exists but a KVM guest hangs, so TCG is forced, as
//!   `crates/vmtest`'s own test VM falls back to it;
//! - a kernel: supermin takes the host's `/boot/vmlinuz-*` and `/lib/modules/<version>`; a
//!   container has none, so Debian's cloud kernel package is downloaded once (`apt-get
//!   download`, like `vm/build-image.sh`), unpacked and `depmod`ed under
//!   `<target>/libguestfs/kernel/<package>`, and named by `SUPERMIN_KERNEL`,
//!   `SUPERMIN_MODULES` and `SUPERMIN_KERNEL_VERSION`;
//! - supermin copies the modules' parent directories' metadata from the host's `/lib/modules`
//!   and fails with `lstat: No such file or directory: /lib/modules` without it, so that
//!   (empty) directory is created when missing;
//! - the appliance cache under `<target>/libguestfs/cache` (`LIBGUESTFS_CACHEDIR`), so only
//!   the first run builds it (about 15 s); later runs only boot it.
//!
//! Every run has a deadline and is killed with its process group (qemu included) when it
//! passes; every failure panics with what to do (`libguestfs-test-tool` with the same
//! environment shows the appliance's whole boot).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::tools::{image_dir, run};

/// The kernel package whose image and modules the appliance boots when the host has none.
const KERNEL_PACKAGE: &str = "linux-image-cloud-amd64";
/// How long one virt-inspector run may take under TCG on a loaded two-core machine.
pub const DEADLINE: Duration = Duration::from_secs(600);

/// The environment virt-inspector runs in, prepared once per process.
#[derive(Debug, Clone)]
pub struct Appliance {
    /// Variables set on every libguestfs command.
    pub env: Vec<(String, String)>,
}

/// The prepared appliance environment (downloads and unpacks a kernel on first use).
pub fn appliance() -> &'static Appliance {
    static APPLIANCE: OnceLock<Appliance> = OnceLock::new();
    APPLIANCE.get_or_init(prepare)
}

fn prepare() -> Appliance {
    let tool = Path::new("/usr/bin/virt-inspector");
    assert!(
        tool.exists(),
        "{} is missing: install the Debian packages `guestfs-tools libguestfs-tools` (scripts/deps.sh)",
        tool.display()
    );
    let base = image_dir()
        .parent()
        .expect("test-images lives in the target dir")
        .join("libguestfs");
    let cache = base.join("cache");
    std::fs::create_dir_all(&cache).expect("create the libguestfs cache dir");
    let mut env = vec![
        ("LIBGUESTFS_BACKEND".to_string(), "direct".to_string()),
        (
            "LIBGUESTFS_CACHEDIR".to_string(),
            cache.display().to_string(),
        ),
    ];
    if std::env::var_os("LIBGUESTFS_BACKEND_SETTINGS").is_none() {
        env.push((
            "LIBGUESTFS_BACKEND_SETTINGS".to_string(),
            "force_tcg".to_string(),
        ));
    }
    let modules_root = Path::new("/lib/modules");
    if !modules_root.exists() {
        std::fs::create_dir_all(modules_root).unwrap_or_else(|e| {
            panic!(
                "supermin needs the directory /lib/modules to exist (it copies its metadata into \
                 the appliance) and creating it failed ({e}): run as root or `mkdir /lib/modules`"
            )
        });
    }
    if !host_has_kernel() {
        let (kernel, modules, version) = downloaded_kernel(&base.join("kernel"));
        env.push(("SUPERMIN_KERNEL".into(), kernel.display().to_string()));
        env.push(("SUPERMIN_MODULES".into(), modules.display().to_string()));
        env.push(("SUPERMIN_KERNEL_VERSION".into(), version));
    }
    Appliance { env }
}

/// Whether supermin would find a kernel of its own: a readable `/boot/vmlinuz-V` with its
/// `/lib/modules/V`.
fn host_has_kernel() -> bool {
    let Ok(entries) = std::fs::read_dir("/boot") else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.strip_prefix("vmlinuz-").is_some_and(|version| {
            std::fs::File::open(e.path()).is_ok()
                && Path::new("/lib/modules").join(version).is_dir()
        })
    })
}

/// Debian's cloud kernel unpacked under `dir/<real package>`: (vmlinuz, modules dir, version).
fn downloaded_kernel(dir: &Path) -> (PathBuf, PathBuf, String) {
    let package = real_kernel_package();
    let unpacked = dir.join(&package);
    let version = package
        .strip_prefix("linux-image-")
        .unwrap_or(&package)
        .to_string();
    let kernel = unpacked.join(format!("boot/vmlinuz-{version}"));
    let modules = unpacked.join(format!("lib/modules/{version}"));
    if !modules.join("modules.dep").exists() || !kernel.exists() {
        let work = dir.join(format!("{package}.tmp{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).expect("create the kernel download dir");
        let downloaded = Command::new("apt-get")
            .args(["download", "-q", &package])
            .current_dir(&work)
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run apt-get ({e}): install the Debian package `apt`")
            });
        assert!(
            downloaded.success(),
            "apt-get download {package} failed: the appliance needs a kernel and /boot has none \
             (run apt-get update, or install a linux-image package)"
        );
        let deb = std::fs::read_dir(&work)
            .expect("read the kernel download dir")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .unwrap_or_else(|| panic!("apt-get download {package} left no .deb"));
        let tree = work.join("tree");
        run(
            "dpkg-deb",
            "dpkg",
            &["-x", &deb.to_string_lossy(), &tree.to_string_lossy()],
            None,
        );
        // The .deb ships no modules.dep (its postinst makes it); supermin needs it.
        run(
            "depmod",
            "kmod",
            &["-b", &tree.to_string_lossy(), &version],
            None,
        );
        let _ = std::fs::remove_dir_all(&unpacked);
        std::fs::rename(&tree, &unpacked).expect("move the unpacked kernel into place");
        let _ = std::fs::remove_dir_all(&work);
    }
    (kernel, modules, version)
}

/// The versioned package behind the metapackage (`linux-image-6.1.0-N-cloud-amd64`).
fn real_kernel_package() -> String {
    let out = run(
        "apt-cache",
        "apt",
        &[
            "depends",
            "--no-recommends",
            "--no-suggests",
            KERNEL_PACKAGE,
        ],
        None,
    );
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|d| {
            d.strip_prefix("linux-image-")
                .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        })
        .map(str::to_string)
        .unwrap_or_else(|| {
            panic!("apt knows no {KERNEL_PACKAGE} (apt-cache depends printed {out:?}): run apt-get update")
        })
}

/// The `--format` virt-inspector is told for a disk, from its magic. Without it libguestfs
/// probes the format, which its documentation warns against for raw images a guest wrote.
pub fn disk_format(disk: &Path) -> &'static str {
    let mut magic = [0u8; 4];
    let read = std::fs::File::open(disk)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok();
    match &magic {
        b"QFI\xfb" if read => "qcow2",
        _ => "raw",
    }
}

/// `virt-inspector` over `disks` (one guest), with `extra` options, in the appliance's
/// environment.
pub fn virt_inspector_command(disks: &[PathBuf], extra: &[&str]) -> Command {
    let mut command = Command::new("virt-inspector");
    command.envs(appliance().env.iter().map(|(k, v)| (k, v)));
    command.args(extra);
    for disk in disks {
        command.arg(format!("--format={}", disk_format(disk)));
        command.arg("-a").arg(disk);
    }
    command
}

/// What a finished virt-inspector run printed.
#[derive(Debug)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs virt-inspector (`--no-icon` and `flags`) over one guest's disks and returns its XML;
/// panics with its stderr (and how to see the appliance boot) when it fails or passes
/// [`DEADLINE`].
pub fn virt_inspector_xml(disks: &[PathBuf], flags: &[&str]) -> Output {
    let mut all = vec!["--no-icon"];
    all.extend_from_slice(flags);
    let out = run_with_deadline(virt_inspector_command(disks, &all), DEADLINE);
    let env: Vec<String> = appliance()
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert!(
        out.0,
        "virt-inspector {disks:?} failed after {:?}:\n{}\nTo see the appliance boot: {} \
         libguestfs-test-tool",
        out.1.elapsed,
        out.1.stderr,
        env.join(" ")
    );
    out.1
}

/// Runs `command` in its own process group, killing the group when `deadline` passes.
/// Returns (succeeded, output).
pub fn run_with_deadline(mut command: Command, deadline: Duration) -> (bool, Output) {
    use std::os::unix::process::CommandExt;
    let dir = tempdir_in_target();
    let stdout_path = dir.join("stdout");
    let stderr_path = dir.join("stderr");
    let start = Instant::now();
    let mut child = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {command:?} ({e}): install the Debian packages `guestfs-tools libguestfs-tools`")
        });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if start.elapsed() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = start.elapsed();
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let mut stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    if status.is_none() {
        stderr.push_str(&format!("\nkilled: still running after {deadline:?}"));
    }
    let ok = status.is_some_and(|s| s.success());
    (
        ok,
        Output {
            stdout,
            stderr,
            elapsed,
        },
    )
}

fn tempdir_in_target() -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = image_dir().join(format!("run.{}.{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch dir");
    dir
}
