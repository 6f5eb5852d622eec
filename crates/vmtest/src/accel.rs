//! Choosing QEMU's accelerator.
//!
//! `/dev/kvm` being openable is not enough: in some nested setups KVM creates VMs and even runs
//! firmware, yet a Linux kernel hangs right after the boot loader. So KVM is used only when a
//! probe boot of the very kernel we will run gets as far as its panic for want of a root
//! filesystem (about a second with KVM); otherwise TCG. The verdict is kept beside the image
//! for the rest of the host's boot (keyed by its boot id), so only the first run pays for it.
//! `PORTHOLE_VM_ACCEL=kvm|tcg` skips the probe.

use crate::image::Image;
use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long the KVM probe boot may take before KVM is declared unusable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// QEMU's arguments for this accelerator (and the CPU model that goes with it).
    pub fn qemu_args(self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg => ["-accel", "tcg", "-cpu", "max"],
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG",
        })
    }
}

/// The accelerator to use, decided once per process; the reason is printed to stderr.
pub fn detect(image: &Image) -> Accel {
    static CHOSEN: OnceLock<Accel> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let (accel, why) = decide(image);
        eprintln!("porthole-vm: using {accel}: {why}");
        accel
    })
}

fn decide(image: &Image) -> (Accel, String) {
    match std::env::var("PORTHOLE_VM_ACCEL").as_deref() {
        Ok("kvm") => return (Accel::Kvm, "PORTHOLE_VM_ACCEL=kvm".into()),
        Ok("tcg") => return (Accel::Tcg, "PORTHOLE_VM_ACCEL=tcg".into()),
        _ => {}
    }
    if let Err(e) = OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        return (Accel::Tcg, format!("/dev/kvm is not usable ({e})"));
    }
    let verdict_file = image.dir.join("kvm-probe");
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let remembered = std::fs::read_to_string(&verdict_file)
        .ok()
        .and_then(|text| {
            text.strip_prefix(boot_id.trim())
                .map(str::trim)
                .map(String::from)
        });
    let works = match remembered.as_deref() {
        Some("kvm") => true,
        Some("tcg") => false,
        _ => {
            let works = probe_kvm(&image.kernel);
            let verdict = if works { "kvm" } else { "tcg" };
            let _ = std::fs::write(&verdict_file, format!("{} {verdict}\n", boot_id.trim()));
            works
        }
    };
    if works {
        (Accel::Kvm, "/dev/kvm boots the kernel".into())
    } else {
        let secs = PROBE_TIMEOUT.as_secs();
        let why = format!("/dev/kvm opens but a KVM guest kernel did not boot within {secs}s");
        (Accel::Tcg, why)
    }
}

/// Boots `kernel` under KVM without an initramfs: it panics for want of a root filesystem and,
/// with `panic=-1 -no-reboot`, QEMU exits. Exiting cleanly in time means KVM works.
fn probe_kvm(kernel: &Path) -> bool {
    let child = Command::new("qemu-system-x86_64")
        .args(Accel::Kvm.qemu_args())
        .args([
            "-m",
            "128",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
        ])
        .args(["-no-reboot", "-kernel"])
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    let start = Instant::now();
    while start.elapsed() < PROBE_TIMEOUT {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}
