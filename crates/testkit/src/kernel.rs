//! Images written by the kernel itself: loop devices, mounts and lvm2, each undone on drop so a
//! failing test leaves no loop device, mount or active volume group behind. These need root
//! (CI runs as root); [`need_root`] says so loudly instead of letting a tool fail obscurely.

use std::path::{Path, PathBuf};

use crate::tools::run;
use crate::tree::is_root;

/// Fails the test with a clear message unless it runs as root.
pub fn need_root(what: &str) {
    assert!(
        is_root(),
        "{what} needs root (loop devices, mounts, lvm2): run the tests as root, as CI does"
    );
}

/// A loop device over a file (or a window of it), detached on drop.
pub struct Loop(pub String);

impl Loop {
    pub fn attach(file: &Path) -> Loop {
        Self::attach_window(file, 0, None)
    }

    /// A loop device over `size` bytes of `file` from `offset`.
    pub fn attach_window(file: &Path, offset: u64, size: Option<u64>) -> Loop {
        let mut args = vec![
            "-f".to_string(),
            "--show".into(),
            "-o".into(),
            offset.to_string(),
        ];
        if let Some(size) = size {
            args.extend(["--sizelimit".into(), size.to_string()]);
        }
        args.push(file.to_string_lossy().into_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let dev = run("losetup", "mount", &args, None).trim().to_string();
        assert!(
            dev.starts_with("/dev/loop"),
            "losetup printed {dev:?}: loop devices are needed to build these images"
        );
        Loop(dev)
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .args(["-d", &self.0])
            .status();
    }
}

/// A mounted filesystem, unmounted on drop.
pub struct Mount(pub PathBuf);

impl Mount {
    /// Mounts `source` (a device, or an image file with `loop` among `opts`) on `dir`.
    pub fn new(source: &Path, dir: &Path, opts: &str) -> Mount {
        std::fs::create_dir_all(dir).expect("create mountpoint");
        let mut args = vec![];
        if !opts.is_empty() {
            args.extend(["-o", opts]);
        }
        let (source, target) = (source.to_string_lossy(), dir.to_string_lossy());
        args.extend([source.as_ref(), target.as_ref()]);
        run("mount", "mount", &args, None);
        Mount(dir.to_path_buf())
    }

    /// Copies the contents of `tree` into the mounted filesystem, preserving everything.
    pub fn fill_from(&self, tree: &Path) {
        run(
            "cp",
            "coreutils",
            &[
                "-a",
                &format!("{}/.", tree.display()),
                &self.0.to_string_lossy(),
            ],
            None,
        );
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// lvm2 restricted to `devices`: no udev, no backups or archives, nothing else scanned, so a
/// test never touches the machine's own volume groups.
pub fn lvm(devices: &[&str], args: &[&str]) -> String {
    let config = lvm_config(devices);
    let mut full = vec![args[0], "--config", &config];
    full.extend_from_slice(&args[1..]);
    run("lvm", "lvm2", &full, None)
}

/// Creates volume group `vg` on the PV `pv` (a loop device) and in it, inactive, one linear LV
/// per `(name, MiB)`; returns each LV's byte offset on the PV, from lvm2's own report.
/// device-mapper is not needed: a loop window over those bytes of the PV reaches the LV.
pub fn create_lvs(pv: &str, vg: &str, lvs: &[(&str, u64)]) -> Vec<u64> {
    let devices = [pv];
    lvm(&devices, &["pvcreate", "-y", "-ff", pv]);
    lvm(&devices, &["vgcreate", "-y", vg, pv]);
    let number = |args: &[&str]| -> u64 {
        let out = lvm(&devices, args);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("lvm {args:?} printed {out:?}"))
    };
    let bytes = ["--noheadings", "--units", "b", "--nosuffix", "-o"];
    let pe_start = number(&[&["pvs"], &bytes[..], &["pe_start", pv]].concat());
    let extent = number(&[&["vgs"], &bytes[..], &["vg_extent_size", vg]].concat());
    let mut offsets = Vec::new();
    for (name, mib) in lvs {
        let size = format!("{mib}M");
        lvm(
            &devices,
            &[
                "lvcreate",
                "--driverloaded",
                "n",
                "-an",
                "-Zn",
                "-Wn",
                "-y",
                "-L",
                &size,
                "-n",
                name,
                vg,
            ],
        );
        let lv = format!("{vg}/{name}");
        let ranges = lvm(
            &devices,
            &["lvs", "--noheadings", "-o", "seg_pe_ranges", &lv],
        );
        let first_pe: u64 = ranges
            .trim()
            .rsplit_once(':')
            .and_then(|(_, r)| r.split('-').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected seg_pe_ranges {ranges:?}"));
        offsets.push(pe_start + first_pe * extent);
    }
    offsets
}

/// lvm2's `--config` that sees only `devices`.
fn lvm_config(devices: &[&str]) -> String {
    let accept: Vec<String> = devices.iter().map(|d| format!("\"a|^{d}$|\"")).collect();
    format!(
        "devices {{ filter = [ {}, \"r|.*|\" ] obtain_device_list_from_udev = 0 use_devicesfile = 0 }} \
         activation {{ udev_sync = 0 udev_rules = 0 monitoring = 0 }} backup {{ backup = 0 archive = 0 }}",
        accept.join(", ")
    )
}

/// An active volume group, deactivated on drop (so its loop devices can be detached).
pub struct ActiveVg {
    pub name: String,
    devices: Vec<String>,
}

impl ActiveVg {
    /// Activates `name` (its PVs on `devices`); LVs appear as `/dev/mapper/NAME-LV`.
    pub fn activate(name: &str, devices: &[&str]) -> ActiveVg {
        lvm(devices, &["vgchange", "-ay", "--ignoremonitoring", name]);
        ActiveVg {
            name: name.to_string(),
            devices: devices.iter().map(|d| d.to_string()).collect(),
        }
    }

    /// The device-mapper path of one of its LVs.
    pub fn lv_path(&self, lv: &str) -> PathBuf {
        PathBuf::from(format!("/dev/mapper/{}-{lv}", self.name.replace('-', "--")))
    }
}

impl Drop for ActiveVg {
    fn drop(&mut self) {
        let devices: Vec<&str> = self.devices.iter().map(String::as_str).collect();
        let config = lvm_config(&devices);
        let _ = std::process::Command::new("lvm")
            .args(["vgchange", "--config", &config, "-an", &self.name])
            .status();
    }
}
