//! A private libvirt daemon, and transient domains booting the test image under it.
//!
//! The tests must not need (or disturb) a host libvirt: systemd may not be there to start one,
//! and a system instance owns global state (`/run/libvirt`, cgroups, security labels). So
//! [`Libvirtd::start`] runs its own `libvirtd` as an unprivileged session daemon, whose whole
//! state lives under the XDG directories we give it in a temporary directory. When we are root
//! the daemon runs as `nobody` (uid 65534) instead, since libvirtd run as root is always the
//! system instance; root can still connect to its socket. Clients reach it through
//! [`Libvirtd::uri`] (`qemu+unix:///session?socket=...`).
//!
//! Domains are `<domain type='qemu'>` (TCG: the daemon, unprivileged, cannot use `/dev/kvm`)
//! booting the test image's kernel and initramfs directly, with the guest agent's channel
//! `org.qemu.guest_agent.0` that libvirt connects to itself. libvirtd leaves QEMU running when
//! it exits (by design, to survive restarts), so dropping a [`Libvirtd`] destroys its domains
//! first and then kills any QEMU its pid files still name.

use crate::error::VmError;
use crate::image::Image;
use crate::tool;
use crate::vm::KERNEL_CMDLINE;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The uid and gid the daemon runs as when we are root (`nobody`, `nogroup`).
const UNPRIVILEGED: u32 = 65534;
/// How long the daemon may take to open its socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of a log shown in errors.
const LOG_TAIL: usize = 4000;
/// The Debian packages of the daemon, its QEMU driver, and virsh.
pub const PACKAGES: &str = "libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients";

/// A running private libvirtd; stopped, with its domains, when dropped.
#[derive(Debug)]
pub struct Libvirtd {
    daemon: Child,
    dir: tempfile::TempDir,
    uri: String,
    domains: Vec<String>,
}

/// What a domain gets.
#[derive(Debug, Clone)]
pub struct DomainSpec {
    pub name: String,
    pub memory_mib: u32,
    /// Boot the test image; `None`: no kernel (the firmware finds nothing to boot and idles).
    pub image: Option<Image>,
    /// Give it the `org.qemu.guest_agent.0` channel.
    pub agent_channel: bool,
}

impl Libvirtd {
    /// Starts the daemon and waits until virsh can talk to it.
    pub fn start() -> Result<Self, VmError> {
        let dir = tempfile::Builder::new()
            .prefix("px-lv.")
            .tempdir()
            .map_err(|e| VmError::io("creating the libvirt directory", std::env::temp_dir(), e))?;
        let root = nix_is_root();
        for sub in ["run", "config", "cache", "data", "home", "image", "log"] {
            let path = dir.path().join(sub);
            std::fs::create_dir(&path).map_err(|e| VmError::io("creating", &path, e))?;
            if root {
                chown(&path)?;
            }
        }
        // The daemon's user must get through our directory to its own.
        set_mode(dir.path(), 0o755)?;
        set_mode(&dir.path().join("run"), 0o700)?;
        let log = dir.path().join("log/libvirtd.log");
        let stderr_path = dir.path().join("libvirtd.stderr");
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(|e| VmError::io("creating", &stderr_path, e))?;
        let mut command = Command::new("libvirtd");
        command
            .current_dir(dir.path())
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LC_ALL", "C")
            .env("HOME", dir.path().join("home"))
            .env("XDG_RUNTIME_DIR", dir.path().join("run"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("LIBVIRT_LOG_OUTPUTS", format!("3:file:{}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if root {
            use std::os::unix::process::CommandExt;
            command.uid(UNPRIVILEGED).gid(UNPRIVILEGED);
        }
        let daemon = command.spawn().map_err(|source| VmError::ToolMissing {
            tool: "libvirtd".into(),
            install: format!("install the Debian packages {PACKAGES}"),
            source,
        })?;
        let socket = dir.path().join("run/libvirt/libvirt-sock");
        let uri = format!("qemu+unix:///session?socket={}", socket.display());
        let mut libvirtd = Libvirtd {
            daemon,
            dir,
            uri,
            domains: Vec::new(),
        };
        libvirtd.wait_ready(&socket)?;
        Ok(libvirtd)
    }

    fn wait_ready(&mut self, socket: &Path) -> Result<(), VmError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.daemon.try_wait() {
                return Err(VmError::ToolFailed {
                    tool: "libvirtd".into(),
                    status: status.to_string(),
                    stderr: self.log(),
                });
            }
            if socket.exists() && self.virsh(&["uri"]).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(VmError::NotReady {
                    what: format!(
                        "libvirtd's socket {} (log: {})",
                        socket.display(),
                        self.log()
                    ),
                    timeout: START_TIMEOUT,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The URI that reaches this daemon.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The directory holding the daemon's state, the images and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `virsh -c URI ARGS...`; returns its standard output.
    pub fn virsh(&self, args: &[&str]) -> Result<String, VmError> {
        tool::run(
            Command::new("virsh")
                .env("LC_ALL", "C")
                .args(["--connect", &self.uri])
                .args(args),
            "install the Debian package libvirt-clients",
        )
    }

    /// The end of the daemon's log (warnings and errors) and of its standard error.
    pub fn log(&self) -> String {
        let dir = self.dir.path();
        format!(
            "{}{}",
            tail(&dir.join("log/libvirtd.log")),
            tail(&dir.join("libvirtd.stderr"))
        )
    }

    /// The end of a domain's serial console.
    pub fn console(&self, name: &str) -> String {
        tail(&self.console_path(name))
    }

    /// The end of libvirt's QEMU log for a domain (QEMU's command line and its errors).
    pub fn qemu_log(&self, name: &str) -> String {
        tail(
            &self
                .dir
                .path()
                .join(format!("cache/libvirt/qemu/log/{name}.log")),
        )
    }

    fn console_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("image/{name}.console.log"))
    }

    /// Copies the image where the daemon's user can read it, so the image cache may stay
    /// private to us, and makes the domain's data disk ([`crate::disk`]).
    fn stage(&self, image: &Image, name: &str) -> Result<Boot, VmError> {
        let kernel = self.dir.path().join("image/vmlinuz");
        let initrd = self.dir.path().join("image/initrd.img");
        for (from, to) in [(&image.kernel, &kernel), (&image.initrd, &initrd)] {
            if !to.exists() {
                std::fs::copy(from, to).map_err(|e| VmError::io("copying the image", from, e))?;
                set_mode(to, 0o644)?;
            }
        }
        let disk = self.dir.path().join(format!("image/{name}.data.img"));
        crate::disk::build(&disk, &self.dir.path().join(format!("{name}.data-tree")))?;
        if nix_is_root() {
            chown(&disk)?;
        }
        Ok(Boot {
            kernel,
            initrd,
            disk,
        })
    }

    /// Creates (defines and starts) a transient domain.
    pub fn create(&mut self, spec: &DomainSpec) -> Result<(), VmError> {
        let boot = match &spec.image {
            Some(image) => Some(self.stage(image, &spec.name)?),
            None => None,
        };
        let xml = domain_xml(spec, boot.as_ref(), &self.console_path(&spec.name));
        let path = self.dir.path().join(format!("image/{}.xml", spec.name));
        std::fs::write(&path, xml).map_err(|e| VmError::io("writing", &path, e))?;
        let path_text = path.display().to_string();
        self.virsh(&["create", &path_text])
            .map_err(|e| self.with_qemu_log(e, &spec.name))?;
        self.domains.push(spec.name.clone());
        Ok(())
    }

    /// Defines a domain without starting it.
    pub fn define(&mut self, spec: &DomainSpec) -> Result<(), VmError> {
        let xml = domain_xml(spec, None, &self.console_path(&spec.name));
        let path = self.dir.path().join(format!("image/{}.xml", spec.name));
        std::fs::write(&path, xml).map_err(|e| VmError::io("writing", &path, e))?;
        self.virsh(&["define", &path.display().to_string()])
            .map(drop)
    }

    fn with_qemu_log(&self, error: VmError, name: &str) -> VmError {
        VmError::ToolFailed {
            tool: "virsh create".into(),
            status: error.to_string(),
            stderr: format!(
                "--- QEMU log ---\n{}\n--- libvirtd log ---\n{}",
                self.qemu_log(name),
                self.log()
            ),
        }
    }

    fn stop(&mut self) {
        for name in std::mem::take(&mut self.domains) {
            let _ = self.virsh(&["destroy", &name]);
        }
        if let Ok(pid) = i32::try_from(self.daemon.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.daemon.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        self.kill_leftover_qemu();
    }

    /// Kills the QEMU processes our daemon started and left behind (their pid files remain
    /// when a destroy failed).
    fn kill_leftover_qemu(&self) {
        let run = self.dir.path().join("run/libvirt/qemu/run");
        let Ok(entries) = std::fs::read_dir(&run) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "pid") {
                let pid = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok());
                if let Some(pid) = pid.filter(|p| *p > 1) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a domain booting the image gets, staged where the daemon's user can reach it.
#[derive(Debug, Clone)]
pub struct Boot {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The ext4 data disk the guest mounts on `/data`.
    pub disk: PathBuf,
}

/// The domain's XML: the image booted directly (as [`crate::vm`] does with QEMU) with its data
/// disk, the serial console to a file, the agent channel, user networking, ACPI (so that a
/// guest power-off ends QEMU) and no other devices.
pub fn domain_xml(spec: &DomainSpec, boot: Option<&Boot>, console: &Path) -> String {
    let (os, disk) = match boot {
        Some(b) => (
            format!(
                "<kernel>{}</kernel><initrd>{}</initrd><cmdline>{KERNEL_CMDLINE}</cmdline>",
                b.kernel.display(),
                b.initrd.display()
            ),
            format!(
                "<disk type='file' device='disk'><driver name='qemu' type='raw'/>\
<source file='{}'/><target dev='vda' bus='virtio'/><serial>porthole-data</serial></disk>",
                b.disk.display()
            ),
        ),
        None => (String::new(), String::new()),
    };
    // The image's agent also serves `org.porthole.agent.0` and exits when that port is
    // missing; libvirt leaves that channel alone, so it is a plain socket beside the console.
    let porthole_socket = console.with_extension("porthole.sock");
    let channel = if spec.agent_channel {
        format!(
            "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <channel type='unix'><source mode='bind' path='{}'/>\
<target type='virtio' name='org.porthole.agent.0'/></channel>",
            porthole_socket.display()
        )
    } else {
        String::new()
    };
    format!(
        "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>{os}</os>
  <features><acpi/></features>
  <cpu mode='maximum'/>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    {disk}
    {channel}
    <interface type='user'><model type='virtio'/></interface>
    <memballoon model='none'/>
  </devices>
</domain>
",
        name = spec.name,
        memory = spec.memory_mib,
        console = console.display(),
    )
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn chown(path: &Path) -> Result<(), VmError> {
    std::os::unix::fs::chown(path, Some(UNPRIVILEGED), Some(UNPRIVILEGED))
        .map_err(|e| VmError::io("handing to the daemon's user", path, e))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), VmError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| VmError::io("setting the mode of", path, e))
}

/// The last [`LOG_TAIL`] bytes of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(LOG_TAIL);
    String::from_utf8_lossy(text.get(start..).unwrap_or_default()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(agent_channel: bool) -> DomainSpec {
        DomainSpec {
            name: "vm1".into(),
            memory_mib: 64,
            image: None,
            agent_channel,
        }
    }

    #[test]
    fn domains_get_acpi_and_the_channels_asked_for() {
        let console = Path::new("/d/image/vm1.console.log");
        let boot = Boot {
            kernel: "/d/image/vmlinuz".into(),
            initrd: "/d/image/initrd.img".into(),
            disk: "/d/image/vm1.data.img".into(),
        };
        let with = domain_xml(&spec(true), Some(&boot), console);
        assert!(with.starts_with("<domain type='qemu'>"));
        assert!(with.contains("<acpi/>"));
        assert!(with.contains("name='org.qemu.guest_agent.0'"));
        assert!(with.contains("path='/d/image/vm1.console.porthole.sock'"));
        assert!(with.contains(&format!("<cmdline>{KERNEL_CMDLINE}</cmdline>")));
        assert!(with.contains("<source file='/d/image/vm1.data.img'/>"));
        let without = domain_xml(&spec(false), None, console);
        assert!(!without.contains("channel"));
        assert!(!without.contains("<kernel>"));
    }
}
