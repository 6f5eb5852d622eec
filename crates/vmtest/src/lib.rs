//! porthole's test VM: a guest the project builds itself, booted under QEMU, with the agent
//! reachable over virtio-serial and hybrid vsock.
//!
//! - [`image`]: the kernel and initramfs, built by `vm/build-image.sh` (Debian's kernel package,
//!   busybox-static, the release porthole-agent) and cached under `<target>/vm-image`.
//! - [`accel`]: KVM when it really runs a guest here, TCG otherwise.
//! - [`disk`]: the ext4 data disk, made with `mkfs.ext4 -d` from a small tree.
//! - [`vsockd`]: rust-vmm's `vhost-device-vsock`, the host side of the guest's virtio-vsock
//!   device, exposing Firecracker's hybrid vsock unix socket.
//! - [`outcome`]: the suites' case results (a failed case is reported, the next one runs).
//! - [`vm`]: QEMU itself: [`Vm::start`], [`Vm::wait_for_agent`], [`Vm::stop`].
//! - [`libvirt`]: a private libvirt daemon and transient domains booting the same image.
//!
//! Everything runs as the invoking user except QEMU's `-accel kvm`, which needs `/dev/kvm`, and
//! the private libvirtd, which runs as `nobody` when the invoking user is root.
//! A missing tool is an error that names the Debian package (or the cargo command) to install.

pub mod accel;
pub mod disk;
mod error;
pub mod image;
pub mod libvirt;
pub mod outcome;
mod tool;
pub mod vm;
pub mod vsockd;

pub use accel::Accel;
pub use error::VmError;
pub use image::Image;
pub use vm::{Vm, VmConfig};

/// The agent's vsock port inside the guest (the init writes `vsock-listen -1:1234`).
pub const AGENT_VSOCK_PORT: u32 = 1234;
/// The agent's `fsfreeze-auto-thaw` in the guest (seconds; written by `vm/rootfs/etc/init.d/rcS`).
pub const AUTO_THAW_SECS: u64 = 10;
/// An unprivileged account in the guest (`vm/rootfs/etc/passwd`): name, uid, gid.
pub const GUEST_USER: (&str, u32, u32) = ("porthole", 1000, 1000);
/// A second agent's vsock port, where only CID 7 is admitted: the host must be turned away.
pub const REFUSING_VSOCK_PORT: u32 = 1235;
/// The guest's vsock context id.
pub const GUEST_CID: u32 = 3;
/// The address QEMU's user networking gives the guest.
pub const GUEST_IP: &str = "10.0.2.15";
