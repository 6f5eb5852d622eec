//! One QEMU VM running the test image.
//!
//! Devices: four virtio-serial ports on host unix sockets: `org.qemu.guest_agent.0` for
//! libvirt-style clients, `org.porthole.agent.0`, `org.qemu.guest_agent.ref` where Debian's
//! qemu-ga answers for the in-VM benchmark, and `org.porthole.unused.0`, which nothing in the
//! guest opens; a vhost-user virtio-vsock device backed by
//! vhost-device-vsock (the guest RAM is then a shared memfd, which vhost-user needs), the ext4
//! data disk on virtio-blk, and a virtio-net NIC on user networking with `restrict=on`, so the
//! guest gets 10.0.2.15 but no packet leaves the host. Boot is `-kernel/-initrd` straight into
//! the initramfs: no firmware menus, no bootloader.

use crate::accel::{self, Accel};
use crate::error::VmError;
use crate::image::Image;
use crate::{disk, vsockd, GUEST_CID};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use porthole_client::{Client, Options};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The guest kernel's command line: the console on the first serial port, and a panic ends the
/// VM (with `-no-reboot`) rather than hanging it.
pub const KERNEL_CMDLINE: &str = "console=ttyS0 quiet panic=-1";
/// The virtio-serial port where Debian's qemu-ga runs in the guest (`vm/rootfs/sbin/qemu-ga-service`).
pub const QGA_REF_PORT: &str = "org.qemu.guest_agent.ref";
/// Bytes of the console log shown in errors.
const CONSOLE_TAIL: usize = 4000;
/// How long QEMU may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How to boot.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub memory_mib: u32,
    /// Attach virtio-vsock through vhost-device-vsock.
    pub vsock: bool,
    /// How long the agent may take to answer after QEMU starts.
    pub boot_timeout: Duration,
    /// `None`: detect (see [`accel`]).
    pub accel: Option<Accel>,
}

impl Default for VmConfig {
    fn default() -> Self {
        let boot_secs = std::env::var("PORTHOLE_VM_BOOT_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(180);
        Self {
            memory_mib: 512,
            vsock: true,
            boot_timeout: Duration::from_secs(boot_secs),
            accel: None,
        }
    }
}

/// A running VM; stopped (QEMU and the vsock daemon killed) when dropped.
#[derive(Debug)]
pub struct Vm {
    qemu: Child,
    vsockd: Option<Child>,
    dir: tempfile::TempDir,
    pub accel: Accel,
    pub image: Image,
    config: VmConfig,
    started: Instant,
}

impl Vm {
    /// Builds the image if needed and starts QEMU; does not wait for the guest.
    pub fn start(config: VmConfig) -> Result<Vm, VmError> {
        let image = crate::image::build()?;
        Self::start_image(image, config)
    }

    /// Starts QEMU on an already built image.
    pub fn start_image(image: Image, config: VmConfig) -> Result<Vm, VmError> {
        let dir = tempfile::Builder::new()
            .prefix("porthole-vm.")
            .tempdir()
            .map_err(|e| VmError::io("creating the VM directory", std::env::temp_dir(), e))?;
        disk::build(&dir.path().join("data.img"), &dir.path().join("data-tree"))?;
        let accel = config.accel.unwrap_or_else(|| accel::detect(&image));
        let vsockd = match config.vsock {
            true => Some(vsockd::start(
                &vsockd::find()?,
                GUEST_CID,
                &dir.path().join("vhost-user-vsock.sock"),
                &dir.path().join("vsock.sock"),
                &dir.path().join("vhost-device-vsock.log"),
            )?),
            false => None,
        };
        let stderr_path = dir.path().join("qemu.stderr");
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(|e| VmError::io("creating", &stderr_path, e))?;
        let mut command = qemu_command(dir.path(), &image, accel, &config);
        let qemu = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|source| VmError::ToolMissing {
                tool: "qemu-system-x86_64".into(),
                install: "install the Debian package qemu-system-x86".into(),
                source,
            })?;
        Ok(Vm {
            qemu,
            vsockd,
            dir,
            accel,
            image,
            config,
            started: Instant::now(),
        })
    }

    /// The host socket of the `org.qemu.guest_agent.0` port.
    pub fn qga_socket(&self) -> PathBuf {
        self.dir.path().join("qga.sock")
    }

    /// The host socket of the `org.porthole.agent.0` port.
    pub fn porthole_socket(&self) -> PathBuf {
        self.dir.path().join("porthole.sock")
    }

    /// The host socket of the `org.qemu.guest_agent.ref` port, where Debian's qemu-ga answers.
    pub fn qga_ref_socket(&self) -> PathBuf {
        self.dir.path().join("qga-ref.sock")
    }

    /// The host socket of `org.porthole.unused.0`, a port no guest process listens on.
    pub fn unused_port_socket(&self) -> PathBuf {
        self.dir.path().join("unused.sock")
    }

    /// The hybrid vsock socket (`CONNECT <port>`), when the VM has vsock.
    pub fn hybrid_vsock_socket(&self) -> Option<PathBuf> {
        self.vsockd
            .as_ref()
            .map(|_| self.dir.path().join("vsock.sock"))
    }

    /// The directory holding the sockets, the disk and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The end of the guest's serial console.
    pub fn console(&self) -> String {
        tail(&self.dir.path().join("console.log"))
    }

    /// Waits until the agent answers guest-sync-delimited on the porthole port; returns the
    /// time since QEMU started.
    pub fn wait_for_agent(&mut self) -> Result<Duration, VmError> {
        let deadline = self.started + self.config.boot_timeout;
        let options = Options {
            handshake_timeout: Duration::from_secs(2),
            ..Options::default()
        };
        loop {
            if let Some(status) = self.qemu.try_wait().ok().flatten() {
                return Err(self.exited(status));
            }
            let last = match Client::connect_unix(self.porthole_socket(), options) {
                Ok(_) => return Ok(self.started.elapsed()),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(VmError::BootTimeout {
                    timeout: self.config.boot_timeout,
                    accel: self.accel.to_string(),
                    last,
                    console: self.console(),
                });
            }
            // A refused connect returns at once (QEMU not listening yet): do not spin.
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits up to `timeout` for QEMU to exit by itself (a guest power-off).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.qemu.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                Err(_) => return None,
            }
        }
        None
    }

    /// Stops QEMU (SIGTERM, then SIGKILL after a grace period) and the vsock daemon.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        stop_child(&mut self.qemu);
        if let Some(daemon) = &mut self.vsockd {
            stop_child(daemon);
        }
    }

    fn exited(&self, status: ExitStatus) -> VmError {
        VmError::QemuExited {
            status: status.to_string(),
            stderr: tail(&self.dir.path().join("qemu.stderr")),
            console: self.console(),
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// SIGTERM, a grace period, then SIGKILL; always reaps.
fn stop_child(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The last [`CONSOLE_TAIL`] bytes of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(CONSOLE_TAIL);
    String::from_utf8_lossy(text.get(start..).unwrap_or_default()).into_owned()
}

/// QEMU's command line for `image` with the sockets in `dir`.
fn qemu_command(dir: &Path, image: &Image, accel: Accel, config: &VmConfig) -> Command {
    let path = |name: &str| dir.join(name).display().to_string();
    let mib = config.memory_mib;
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(accel.qemu_args())
        .args(["-m", &format!("{mib}M"), "-smp", "1"])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-vga",
            "none",
        ])
        // A guest reboot or panic ends QEMU instead of looping.
        .arg("-no-reboot")
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initrd)
        .args(["-append", KERNEL_CMDLINE])
        .args(["-serial", &format!("file:{}", path("console.log"))]);
    qemu.args(["-device", "virtio-serial-pci,id=vser0"]);
    for (id, name, socket) in [
        ("qga", "org.qemu.guest_agent.0", "qga.sock"),
        ("porthole", "org.porthole.agent.0", "porthole.sock"),
        ("qgaref", QGA_REF_PORT, "qga-ref.sock"),
        // Nobody in the guest opens this port: the host side of a VM without an agent.
        ("unused", "org.porthole.unused.0", "unused.sock"),
    ] {
        let chardev = format!("socket,id={id},path={},server=on,wait=off", path(socket));
        let port = format!("virtserialport,bus=vser0.0,chardev={id},name={name}");
        qemu.args(["-chardev", &chardev, "-device", &port]);
    }
    if config.vsock {
        // vhost-user maps guest RAM into the daemon: it must be a shareable memfd.
        let memory = format!("memory-backend-memfd,id=mem0,size={mib}M,share=on");
        let chardev = format!("socket,id=vsock0,path={}", path("vhost-user-vsock.sock"));
        qemu.args(["-machine", "memory-backend=mem0", "-object", &memory])
            .args(["-chardev", &chardev])
            .args(["-device", "vhost-user-vsock-pci,chardev=vsock0"]);
    }
    let drive = format!("file={},format=raw,if=none,id=data", path("data.img"));
    qemu.args(["-drive", &drive])
        .args(["-device", "virtio-blk-pci,drive=data,serial=porthole-data"])
        .args(["-netdev", "user,id=net0,restrict=on"])
        .args([
            "-device",
            "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56",
        ]);
    qemu
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: &VmConfig) -> Vec<String> {
        let image = Image {
            dir: "/img".into(),
            kernel: "/img/vmlinuz".into(),
            initrd: "/img/initrd.img".into(),
            manifest: String::new(),
        };
        let command = qemu_command(Path::new("/run/vm"), &image, Accel::Tcg, config);
        command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn no_traffic_leaves_and_vsock_gets_shared_memory() {
        let with = args(&VmConfig::default());
        assert!(with.contains(&"user,id=net0,restrict=on".to_string()));
        assert!(with.contains(&"memory-backend-memfd,id=mem0,size=512M,share=on".to_string()));
        assert!(with.contains(&"vhost-user-vsock-pci,chardev=vsock0".to_string()));
        assert!(with
            .iter()
            .any(|a| a.ends_with("path=/run/vm/porthole.sock,server=on,wait=off")));
        assert!(with.contains(&format!(
            "virtserialport,bus=vser0.0,chardev=qgaref,name={QGA_REF_PORT}"
        )));
        let without = args(&VmConfig {
            vsock: false,
            ..VmConfig::default()
        });
        assert!(!without
            .iter()
            .any(|a| a.contains("vsock") || a.contains("memfd")));
    }
}
