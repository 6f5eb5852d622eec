//! Phony rpm guests, built the way libguestfs builds its `fedora.img`: real partition tables,
//! real lvm2 metadata, real filesystems, and a package database written by real rpm.
//!
//! - [`fedora_lvm_guest`]: Fedora Server 40 on MBR + LVM (an XFS root LV) + an ext4 `/boot`,
//!   `rpmdb.sqlite` written by Debian's rpm 4.18, systemd links made by `systemctl --root`.
//! - [`centos7_guest`]: CentOS 7 on MBR + ext4, no os-release, a Berkeley DB
//!   `/var/lib/rpm/Packages` loaded with Berkeley DB's own `db_load` from the headers rpm wrote
//!   (Debian's rpm reads bdb but cannot write it), optionally damaged ([`Damage`]).
//!
//! The rpm helpers ([`rpmbuild`], [`rpm`], [`sqlite_blobs`], [`bdb_dump`], [`parse_query`])
//! are shared with the rpm database reader's own tests.

use std::path::{Path, PathBuf};

use super::{symlink, write};
use crate::kernel::{create_lvs, need_root, Loop, Mount};
use crate::tools::{cached, run, truncate};

/// Separates the fields of one package in [`QF`]'s output.
pub const FIELD: char = '\x1f';
/// Ends one package in [`QF`]'s output.
pub const RECORD: char = '\x1e';
/// `rpm -qa --qf` format: every field porthole's rpm reader fills, in [`QueriedPackage`] order.
pub const QF: &str = "%{NAME}\x1f%{EPOCHNUM}\x1f%{VERSION}\x1f%{RELEASE}\x1f%{ARCH}\x1f%{SUMMARY}\x1f%{URL}\x1f%{VENDOR}\x1f%{SOURCERPM}\x1f%{DESCRIPTION}\x1e";

/// The volume group of [`fedora_lvm_guest`] (Anaconda names it after the product).
pub const FEDORA_VG: &str = "fedora";
/// The XFS root's UUID in [`fedora_lvm_guest`].
pub const FEDORA_ROOT_UUID: &str = "4a3b2c1d-0e9f-4a8b-9c7d-6e5f4a3b2c1d";
/// The ext4 `/boot`'s UUID in [`fedora_lvm_guest`].
pub const FEDORA_BOOT_UUID: &str = "b0075e1f-1111-4222-8333-944455556666";
/// The ext4 root's UUID in [`centos7_guest`].
pub const CENTOS_ROOT_UUID: &str = "c7c7c7c7-0000-4000-8000-000000000001";
/// The ext4 `/boot`'s UUID in [`centos7_guest`].
pub const CENTOS_BOOT_UUID: &str = "c7c7c7c7-0000-4000-8000-000000000002";
/// The package whose header [`Damage::LyingOffsets`] corrupts.
pub const DAMAGED_PACKAGE: &str = "qemu-guest-agent";

/// One package as `rpm -qa --qf` [`QF`] prints it; rpm's `(none)` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueriedPackage {
    pub name: String,
    pub epoch: u64,
    pub version: Option<String>,
    pub release: Option<String>,
    pub arch: Option<String>,
    pub summary: Option<String>,
    pub url: Option<String>,
    pub vendor: Option<String>,
    pub source_rpm: Option<String>,
    pub description: Option<String>,
}

/// The packages in `rpm -qa --qf QF` output, sorted by name and version.
pub fn parse_query(listing: &str) -> Vec<QueriedPackage> {
    let opt = |s: &str| (s != "(none)" && !s.is_empty()).then(|| s.to_string());
    let mut out: Vec<QueriedPackage> = listing
        .split(RECORD)
        .filter(|r| !r.trim().is_empty())
        .map(|r| {
            let f: Vec<&str> = r.split(FIELD).collect();
            assert_eq!(f.len(), 10, "not a QF record: {r:?}");
            QueriedPackage {
                name: f[0].to_string(),
                epoch: f[1].parse().expect("EPOCHNUM is a number"),
                version: opt(f[2]),
                release: opt(f[3]),
                arch: opt(f[4]),
                summary: opt(f[5]),
                url: opt(f[6]),
                vendor: opt(f[7]),
                source_rpm: opt(f[8]),
                description: opt(f[9]),
            }
        })
        .collect();
    out.sort();
    out
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Builds every spec `(file name, text)` with `rpmbuild -bb` under `top`; the packages made,
/// sorted.
pub fn rpmbuild(top: &Path, specs: &[(String, String)]) -> Vec<PathBuf> {
    std::fs::create_dir_all(top).expect("rpmbuild top dir");
    let topdir = format!("_topdir {}", path_str(top));
    for (name, text) in specs {
        let spec = top.join(name);
        std::fs::write(&spec, text).expect("write spec");
        run(
            "rpmbuild",
            "rpm",
            &["-bb", "--quiet", "--define", &topdir, path_str(&spec)],
            None,
        );
    }
    let mut rpms = Vec::new();
    for arch in std::fs::read_dir(top.join("RPMS")).expect("RPMS dir") {
        for e in std::fs::read_dir(arch.expect("arch dir").path()).expect("arch dir") {
            rpms.push(e.expect("rpm file").path());
        }
    }
    rpms.sort();
    rpms
}

/// Debian's rpm on the database in `dbpath` with backend `backend` (`sqlite`, `bdb_ro`).
pub fn rpm(dbpath: &Path, backend: &str, args: &[&str]) -> String {
    let backend = format!("_db_backend {backend}");
    let mut all = vec!["--define", &backend, "--dbpath", path_str(dbpath)];
    all.extend_from_slice(args);
    run("rpm", "rpm", &all, None)
}

/// Records `rpms` as installed in a new sqlite database in `dbpath`, files left alone.
pub fn install_justdb(dbpath: &Path, rpms: &[PathBuf]) {
    std::fs::create_dir_all(dbpath).expect("dbpath");
    let mut args = vec!["-i", "--justdb", "--nodeps", "--noscripts", "--nosignature"];
    args.extend(rpms.iter().map(|p| path_str(p)));
    rpm(dbpath, "sqlite", &args);
}

/// The header blobs of an `rpmdb.sqlite` (package number, hex), as sqlite3 lists them.
pub fn sqlite_blobs(db: &Path) -> Vec<(u32, String)> {
    run(
        "sqlite3",
        "sqlite3",
        &[
            path_str(db),
            "SELECT hnum || '|' || hex(blob) FROM Packages",
        ],
        None,
    )
    .lines()
    .map(|l| {
        let (n, hex) = l.split_once('|').expect("hnum|blob");
        (n.parse().expect("hnum"), hex.to_string())
    })
    .collect()
}

/// Hex text to bytes.
pub fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The `db_load` input for a Packages file holding `blobs` (package number → header blob),
/// keys in the byte order rpm would have written them on such a host, plus rpm's counter
/// record under key 0.
pub fn bdb_dump(blobs: &[(u32, String)], ty: &str, big_endian: bool, page_size: u32) -> String {
    let key = |n: u32| {
        let b = if big_endian {
            n.to_be_bytes()
        } else {
            n.to_le_bytes()
        };
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    };
    let lorder = if big_endian { 4321 } else { 1234 };
    let mut s = format!(
        "VERSION=3\nformat=bytevalue\ntype={ty}\ndb_lorder={lorder}\ndb_pagesize={page_size}\nHEADER=END\n"
    );
    let max = blobs.iter().map(|(n, _)| *n).max().unwrap_or(0);
    s += &format!(" {}\n {}\n", key(0), key(max + 1));
    for (n, hex) in blobs {
        s += &format!(" {}\n {}\n", key(*n), hex.to_lowercase());
    }
    s + "DATA=END\n"
}

/// The spec of one package of a phony guest, given as `name epoch version release arch url
/// summary` (the summary is the rest of the line).
fn spec(package: &str, vendor: &str) -> (String, String) {
    let f: Vec<&str> = package.splitn(7, ' ').collect();
    let [name, epoch, version, release, arch, url, summary] = f[..] else {
        panic!("not a package line: {package:?}");
    };
    let epoch: u32 = epoch.parse().expect("epoch");
    let epoch = if epoch > 0 {
        format!("Epoch: {epoch}\n")
    } else {
        String::new()
    };
    let text = format!(
        "Name: {name}\nVersion: {version}\nRelease: {release}\n{epoch}Summary: {summary}\n\
         License: MIT\nURL: {url}\nVendor: {vendor}\nBuildArch: {arch}\n\
         %description\nThe {name} package of a phony guest.\n%files\n"
    );
    (format!("{name}-{version}-{release}.spec"), text)
}

const FEDORA_PACKAGES: &[&str] = &[
    "bash 0 5.2.26 3.fc40 x86_64 https://www.gnu.org/software/bash The GNU Bourne Again shell",
    "cloud-init 0 23.4.4 5.fc40 noarch https://github.com/canonical/cloud-init Cloud instance init scripts",
    "fedora-release-server 0 40 39 noarch https://fedoraproject.org/ Fedora release files",
    "kernel-core 0 6.8.5 301.fc40 x86_64 https://www.kernel.org/ The Linux kernel",
    "kernel-core 0 6.8.9 300.fc40 x86_64 https://www.kernel.org/ The Linux kernel",
    "NetworkManager 1 1.46.0 1.fc40 x86_64 https://networkmanager.dev/ Network connection manager and user applications",
    "openssh-server 0 9.6p1 1.fc40.4 x86_64 http://www.openssh.com/portable.html An open source SSH server daemon",
    "qemu-guest-agent 2 8.2.2 1.fc40 x86_64 http://www.qemu.org/ QEMU guest agent",
];

const CENTOS_PACKAGES: &[&str] = &[
    "bash 0 4.2.46 35.el7_9 x86_64 http://www.gnu.org/software/bash The GNU Bourne Again shell",
    "centos-release 0 7 9.2009.1.el7.centos x86_64 http://www.centos.org/ CentOS Linux release file",
    "kernel 0 3.10.0 1160.el7 x86_64 http://www.kernel.org/ The Linux kernel",
    "openssh-server 0 7.4p1 23.el7_9 x86_64 http://www.openssh.com/portable.html An open source SSH server daemon",
    "qemu-guest-agent 10 2.12.0 3.el7 x86_64 http://www.qemu.org QEMU guest agent",
    "yum 0 3.4.3 168.el7.centos noarch http://yum.baseurl.org/ RPM package installer/updater/manager",
];

/// Builds `packages` and records them in a fresh sqlite database; returns its path and what
/// `rpm -qa --qf QF` lists from it.
fn sqlite_database(work: &Path, packages: &[&str], vendor: &str) -> (PathBuf, String) {
    let specs: Vec<(String, String)> = packages.iter().map(|p| spec(p, vendor)).collect();
    let rpms = rpmbuild(&work.join("rpmbuild"), &specs);
    let dbpath = work.join("rpmdb");
    install_justdb(&dbpath, &rpms);
    let listing = rpm(&dbpath, "sqlite", &["-qa", "--qf", QF]);
    (dbpath.join("rpmdb.sqlite"), listing)
}

/// Unit files for `units` in the tree's `usr/lib/systemd/system`, then `systemctl --root`
/// enables `enable` and masks `mask`, as an installer's kickstart would.
fn systemd_units(root: &Path, units: &[&str], enable: &[&str], mask: &[&str]) {
    for unit in units {
        write(
            root,
            &format!("usr/lib/systemd/system/{unit}"),
            b"[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
        );
    }
    let root_arg = format!("--root={}", root.display());
    for (verb, which) in [("enable", enable), ("mask", mask)] {
        if which.is_empty() {
            continue;
        }
        let mut args = vec![root_arg.as_str(), verb];
        args.extend_from_slice(which);
        run("systemctl", "systemd", &args, None);
    }
}

/// The usr-merge links, a real ELF `/usr/bin/bash` (this machine's), for the arch, and rpm's
/// own configuration (`/usr/lib/rpm/rpmrc`, `macros`) with the distribution's database
/// directory `dbpath`, as every rpm-based guest has it: libguestfs runs librpm chrooted into
/// the guest, so virt-inspector fails on a guest without them
/// (`internal_list_rpm_applications: rpmtsInitIterator`). The files are this machine's
/// rpm-common's, whose `%_dbpath` (Debian's `~/.rpmdb`) is replaced.
fn usr_merged(root: &Path, dbpath: &str) {
    let bash = std::fs::read("/bin/bash").expect("this machine's /bin/bash, a real ELF binary");
    write(root, "usr/bin/bash", &bash);
    for file in ["rpmrc", "macros"] {
        let host = Path::new("/usr/lib/rpm").join(file);
        let text = std::fs::read_to_string(&host).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: install the Debian package rpm-common",
                host.display()
            )
        });
        let text: String = text
            .lines()
            .map(|line| match line.starts_with("%_dbpath\t") {
                true => format!("%_dbpath\t\t{dbpath}\n"),
                false => format!("{line}\n"),
            })
            .collect();
        write(root, &format!("usr/lib/rpm/{file}"), text.as_bytes());
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::fs::create_dir_all(root.join(target)).expect("usr dir");
        symlink(root, link, target);
    }
}

const FEDORA_PASSWD: &str = "root:x:0:0:Super User:/root:/bin/bash
bin:x:1:1:bin:/bin:/usr/sbin/nologin
daemon:x:2:2:daemon:/sbin:/usr/sbin/nologin
sshd:x:74:74:Privilege-separated SSH:/usr/share/empty.sshd:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/bash
ansible:x:1001:1001::/home/ansible:/bin/bash
toor:x:0:0::/root:/bin/sh
";
const FEDORA_SHADOW: &str = "root:$6$phony$hash:19800:0:99999:7:::
bin:*:19800:0:99999:7:::
daemon:*:19800:0:99999:7:::
sshd:!!:19800::::::
alice:$y$j9T$phony$hash:19800:0:99999:7:::
ansible:!!:19800:0:99999:7:::
toor::19800:0:99999:7:::
";
const FEDORA_GROUP: &str = "root:x:0:
bin:x:1:
daemon:x:2:
wheel:x:10:alice
sshd:x:74:
alice:x:1000:
ansible:x:1001:
";

/// The Fedora Server root filesystem's tree (the kernels' images go on `/boot`).
fn fedora_root_tree(root: &Path, work: &Path) -> String {
    write(
        root,
        "usr/lib/os-release",
        b"NAME=\"Fedora Linux\"\nVERSION=\"40 (Server Edition)\"\nID=fedora\nVERSION_ID=40\n\
          PRETTY_NAME=\"Fedora Linux 40 (Server Edition)\"\nVARIANT=\"Server Edition\"\n\
          VARIANT_ID=server\n",
    );
    symlink(root, "etc/os-release", "../usr/lib/os-release");
    // dnf as Fedora installs it (virt-inspector says dnf rather than yum only when it is there).
    write(
        root,
        "usr/bin/dnf-3",
        b"#!/usr/bin/python3\nimport dnf.cli.main\n",
    );
    symlink(root, "usr/bin/dnf", "dnf-3");
    write(root, "etc/fedora-release", b"Fedora release 40 (Forty)\n");
    symlink(root, "etc/redhat-release", "fedora-release");
    symlink(root, "etc/system-release", "fedora-release");
    write(root, "etc/hostname", b"fedora-server.example.org\n");
    write(root, "etc/hosts", b"127.0.0.1 localhost\n");
    let fstab = format!(
        "#\n# /etc/fstab\n# Created by anaconda\n#\n\
         /dev/mapper/{FEDORA_VG}-root /     xfs  defaults 0 0\n\
         UUID={FEDORA_BOOT_UUID} /boot ext4 defaults 1 2\n"
    );
    write(root, "etc/fstab", fstab.as_bytes());
    write(root, "etc/passwd", FEDORA_PASSWD.as_bytes());
    write(root, "etc/shadow", FEDORA_SHADOW.as_bytes());
    write(root, "etc/group", FEDORA_GROUP.as_bytes());
    write(
        root,
        "etc/sudoers",
        b"Defaults   !visiblepw\nroot\tALL=(ALL) \tALL\n%wheel\tALL=(ALL)\tALL\n\
          ## Read drop-in files from /etc/sudoers.d\n#includedir /etc/sudoers.d\n",
    );
    write(
        root,
        "etc/sudoers.d/ansible",
        b"ansible ALL=(ALL) NOPASSWD: ALL\n",
    );
    write(
        root,
        "usr/share/zoneinfo/America/New_York",
        b"TZif2 phony\n",
    );
    symlink(
        root,
        "etc/localtime",
        "../usr/share/zoneinfo/America/New_York",
    );
    write(
        root,
        "etc/selinux/config",
        b"# This file controls the state of SELinux on the system.\nSELINUX=enforcing\n\
          SELINUXTYPE=targeted\n",
    );
    write(
        root,
        "etc/default/grub",
        b"GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX=\"rhgb quiet\"\nGRUB_ENABLE_BLSCFG=true\n",
    );
    write(
        root,
        "etc/NetworkManager/system-connections/enp1s0.nmconnection",
        b"[connection]\nid=enp1s0\nuuid=5c4ba2b8-7d0e-3d56-8e4e-07e8d5b6b27e\ntype=ethernet\n\
          interface-name=enp1s0\n\n[ipv4]\naddress1=192.0.2.20/24\ngateway=192.0.2.1\n\
          dns=192.0.2.53;\nmethod=manual\n\n[ipv6]\nmethod=disabled\n",
    );
    write(
        root,
        "etc/cloud/cloud.cfg",
        b"users:\n - default\ndatasource_list: [ NoCloud, ConfigDrive ]\n",
    );
    write(root, "usr/bin/qemu-ga", b"\x7fELF phony qemu-ga\n");
    for k in FEDORA_KERNELS {
        std::fs::create_dir_all(root.join(format!("usr/lib/modules/{k}/kernel"))).expect("mods");
    }
    systemd_units(
        root,
        &[
            "sshd.service",
            "NetworkManager.service",
            "qemu-guest-agent.service",
            "cloud-init.service",
            "firewalld.service",
        ],
        &[
            "sshd.service",
            "NetworkManager.service",
            "qemu-guest-agent.service",
            "cloud-init.service",
        ],
        &["firewalld.service"],
    );
    usr_merged(root, "%{_usr}/lib/sysimage/rpm");
    for dir in ["boot", "home/alice", "root", "tmp", "var/tmp"] {
        std::fs::create_dir_all(root.join(dir)).expect("dir");
    }
    // Fedora 36+ keeps the database in /usr/lib/sysimage/rpm; /var/lib/rpm links there.
    let (db, listing) = sqlite_database(work, FEDORA_PACKAGES, "Fedora Project");
    let bytes = std::fs::read(db).expect("rpmdb.sqlite");
    write(root, "usr/lib/sysimage/rpm/rpmdb.sqlite", &bytes);
    // rpm keeps its database in WAL mode, and a running Fedora leaves the -wal and -shm files
    // beside it. Without them SQLite cannot open a WAL database on a read-only mount at all,
    // which is how libguestfs's appliance mounts the guest.
    write(root, "usr/lib/sysimage/rpm/rpmdb.sqlite-wal", b"");
    write(root, "usr/lib/sysimage/rpm/rpmdb.sqlite-shm", b"");
    symlink(root, "var/lib/rpm", "../../usr/lib/sysimage/rpm");
    listing
}

/// The kernels installed in [`fedora_lvm_guest`].
pub const FEDORA_KERNELS: [&str; 2] = ["6.8.5-301.fc40.x86_64", "6.8.9-300.fc40.x86_64"];
/// The kernel installed in [`centos7_guest`].
pub const CENTOS_KERNEL: &str = "3.10.0-1160.el7.x86_64";

fn boot_tree(boot: &Path, kernels: &[&str], grub: &str) {
    for k in kernels {
        write(boot, &format!("vmlinuz-{k}"), b"phony kernel image\n");
        write(boot, &format!("initramfs-{k}.img"), b"phony initramfs\n");
    }
    write(boot, &format!("{grub}/grub.cfg"), b"set timeout=5\n");
}

const MIB: u64 = 1 << 20;
const BOOT_START: u64 = MIB;
const BOOT_SIZE: u64 = 64 * MIB;
const PV_START: u64 = BOOT_START + BOOT_SIZE;
const FEDORA_DISK_SIZE: u64 = 400 * MIB;
const FEDORA_ROOT_MIB: u64 = 320;

/// A phony guest and what real rpm lists in its database.
#[derive(Debug, Clone)]
pub struct RpmGuest {
    /// The VM's disks.
    pub disks: Vec<PathBuf>,
    /// `rpm -qa --qf` [`QF`] output over the guest's (intact) database; see [`parse_query`].
    pub listing: PathBuf,
}

/// Fedora Server 40 on one raw MBR disk, laid out as Anaconda lays it out (needs root):
///
/// - partition 1: ext4 `/boot` (UUID [`FEDORA_BOOT_UUID`]) with two kernels and grub2;
/// - partition 2 (type 8e): an LVM PV of volume group [`FEDORA_VG`], LV `root` holding the XFS
///   root (UUID [`FEDORA_ROOT_UUID`]), mounted by `/dev/mapper/fedora-root`.
///
/// The root holds os-release (a link into /usr/lib), fedora-release, a hostname, accounts and
/// sudo rules, SELinux, a NetworkManager keyfile, cloud-init, qemu-ga, systemd links made by
/// `systemctl --root` and an `rpmdb.sqlite` written by rpm.
pub fn fedora_lvm_guest() -> RpmGuest {
    let recipe = format!("phony guest: fedora 40 mbr lvm xfs v5 {FEDORA_PACKAGES:?}");
    let mut paths = cached(&recipe, &["disk.raw", "rpm-qa.txt"], |paths| {
        need_root("building the Fedora LVM/XFS phony guest");
        let (disk, work) = (&paths[0], paths[0].with_extension("work"));
        std::fs::create_dir_all(&work).expect("work dir");
        truncate(disk, FEDORA_DISK_SIZE);
        let layout = format!(
            "label: dos\nstart={}, size={}, type=83, bootable\nstart={}, type=8e\n",
            BOOT_START / 512,
            BOOT_SIZE / 512,
            PV_START / 512
        );
        run("sfdisk", "fdisk", &["-q", path_str(disk)], Some(&layout));
        let boot = work.join("boot");
        boot_tree(&boot, &FEDORA_KERNELS, "grub2");
        mkfs_ext4_at(disk, &boot, BOOT_START, BOOT_SIZE, FEDORA_BOOT_UUID);

        let pv = Loop::attach_window(disk, PV_START, Some(FEDORA_DISK_SIZE - PV_START));
        let lv_start = create_lvs(&pv.0, FEDORA_VG, &[("root", FEDORA_ROOT_MIB)])[0];
        drop(pv);
        let root = work.join("root");
        let listing = fedora_root_tree(&root, &work);
        std::fs::write(&paths[1], listing).expect("write listing");
        let lv = Loop::attach_window(disk, PV_START + lv_start, Some(FEDORA_ROOT_MIB * MIB));
        let uuid = format!("uuid={FEDORA_ROOT_UUID}");
        run(
            "mkfs.xfs",
            "xfsprogs",
            &["-q", "-f", "-m", &uuid, &lv.0],
            None,
        );
        let mounted = Mount::new(Path::new(&lv.0), &work.join("root-mnt"), "");
        mounted.fill_from(&root);
        drop(mounted);
        drop(lv);
        let _ = std::fs::remove_dir_all(&work);
    });
    let listing = paths.remove(1);
    RpmGuest {
        disks: paths,
        listing,
    }
}

/// `mkfs.ext4 -d tree` into `size` bytes of `disk` from `offset`, with `uuid`.
fn mkfs_ext4_at(disk: &Path, tree: &Path, offset: u64, size: u64, uuid: &str) {
    run(
        "mkfs.ext4",
        "e2fsprogs",
        &[
            "-q",
            "-F",
            "-U",
            uuid,
            "-E",
            &format!("offset={offset}"),
            "-d",
            path_str(tree),
            path_str(disk),
            &format!("{}k", size / 1024),
        ],
        None,
    );
}

/// What is wrong with [`centos7_guest`]'s rpm database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Nothing: what `db_load` wrote.
    None,
    /// [`DAMAGED_PACKAGE`]'s header: the SUMMARY entry's offset points far past the data
    /// store and the DESCRIPTION entry's is negative.
    LyingOffsets,
    /// The file cut to half its length, as a full disk or a partial copy leaves it.
    Truncated,
}

/// CentOS 7 on one raw MBR disk without LVM (builds without root): partition 1 ext4 `/boot`
/// (UUID [`CENTOS_BOOT_UUID`]), partition 2 ext4 root (UUID [`CENTOS_ROOT_UUID`]), both
/// mounted by `UUID=`. `/etc/centos-release` and no os-release; the hostname in
/// `/etc/sysconfig/network` (an upgraded system); an ifcfg file; a Berkeley DB
/// `/var/lib/rpm/Packages` (hash, 4096-byte pages, little-endian, as CentOS 7 on x86_64 has
/// it) that rpm's own `bdb_ro` reads back, then damaged as `damage` says.
pub fn centos7_guest(damage: Damage) -> RpmGuest {
    let recipe = format!("phony guest: centos 7 mbr ext4 bdb v3 {damage:?} {CENTOS_PACKAGES:?}");
    let mut paths = cached(&recipe, &["disk.raw", "rpm-qa.txt"], |paths| {
        let (disk, work) = (&paths[0], paths[0].with_extension("work"));
        std::fs::create_dir_all(&work).expect("work dir");
        let root_start = BOOT_START + BOOT_SIZE;
        let root_size = 64 * MIB;
        truncate(disk, root_start + root_size);
        let layout = format!(
            "label: dos\nstart={}, size={}, type=83, bootable\nstart={}, type=83\n",
            BOOT_START / 512,
            BOOT_SIZE / 512,
            root_start / 512
        );
        run("sfdisk", "fdisk", &["-q", path_str(disk)], Some(&layout));
        let boot = work.join("boot");
        boot_tree(&boot, &[CENTOS_KERNEL], "grub2");
        mkfs_ext4_at(disk, &boot, BOOT_START, BOOT_SIZE, CENTOS_BOOT_UUID);
        let root = work.join("root");
        let (packages, listing) = centos_packages(&work, damage);
        std::fs::write(&paths[1], listing).expect("write listing");
        centos_root_tree(&root);
        write(&root, "var/lib/rpm/Packages", &packages);
        mkfs_ext4_at(disk, &root, root_start, root_size, CENTOS_ROOT_UUID);
        let _ = std::fs::remove_dir_all(&work);
    });
    let listing = paths.remove(1);
    RpmGuest {
        disks: paths,
        listing,
    }
}

/// The CentOS packages in a Berkeley DB Packages file, damaged as asked; and what rpm's
/// `bdb_ro` lists from the intact file.
fn centos_packages(work: &Path, damage: Damage) -> (Vec<u8>, String) {
    let (sqlite, from_sqlite) = sqlite_database(work, CENTOS_PACKAGES, "CentOS");
    let blobs = sqlite_blobs(&sqlite);
    let dir = work.join("bdb");
    std::fs::create_dir_all(&dir).expect("bdb dir");
    let file = dir.join("Packages");
    run(
        "db_load",
        "db-util",
        &[path_str(&file)],
        Some(&bdb_dump(&blobs, "hash", false, 4096)),
    );
    let listing = rpm(&dir, "bdb_ro", &["-qa", "--qf", QF]);
    assert_eq!(
        parse_query(&listing),
        parse_query(&from_sqlite),
        "rpm's bdb_ro does not read the Packages file as the sqlite database"
    );
    let mut bytes = std::fs::read(&file).expect("Packages");
    match damage {
        Damage::None => {}
        Damage::Truncated => bytes.truncate(bytes.len() / 2),
        Damage::LyingOffsets => {
            let needle = format!("{DAMAGED_PACKAGE}\0");
            let blob = blobs
                .iter()
                .map(|(_, hex)| unhex(hex))
                .find(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
                .expect("the damaged package's header");
            lie_about_offsets(&mut bytes, &blob);
        }
    }
    (bytes, listing)
}

/// Finds `blob`'s index in `bytes` and points its SUMMARY (1004) entry past any store and its
/// DESCRIPTION (1005) entry before it.
fn lie_about_offsets(bytes: &mut [u8], blob: &[u8]) {
    let be32 = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().expect("4"));
    let entries = be32(blob, 0) as usize;
    let index = &blob[..8 + 16 * entries];
    let at = bytes
        .windows(index.len())
        .position(|w| w == index)
        .expect("the header's index lies in one page");
    for i in 0..entries {
        let e = at + 8 + 16 * i;
        let offset: i32 = match be32(bytes, e) {
            1004 => 0x7fff_fff0,
            1005 => -8,
            _ => continue,
        };
        bytes[e + 8..e + 12].copy_from_slice(&offset.to_be_bytes());
    }
}

fn centos_root_tree(root: &Path) {
    write(
        root,
        "etc/centos-release",
        b"CentOS Linux release 7.9.2009 (Core)\n",
    );
    symlink(root, "etc/redhat-release", "centos-release");
    symlink(root, "etc/system-release", "centos-release");
    write(
        root,
        "etc/sysconfig/network",
        b"NETWORKING=yes\nHOSTNAME=centos7.example.com\n",
    );
    write(root, "etc/hosts", b"127.0.0.1 localhost\n");
    let fstab = format!(
        "UUID={CENTOS_ROOT_UUID} /     ext4 defaults 1 1\n\
         UUID={CENTOS_BOOT_UUID} /boot ext4 defaults 1 2\n"
    );
    write(root, "etc/fstab", fstab.as_bytes());
    write(
        root,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/bash\nbin:x:1:1:bin:/bin:/sbin/nologin\n\
          centos:x:1000:1000:Cloud User:/home/centos:/bin/bash\n",
    );
    write(
        root,
        "etc/shadow",
        b"root:!!:18000:0:99999:7:::\nbin:*:18000:0:99999:7:::\ncentos:!!:18000:0:99999:7:::\n",
    );
    write(
        root,
        "etc/group",
        b"root:x:0:\nbin:x:1:\nwheel:x:10:centos\ncentos:x:1000:\n",
    );
    write(
        root,
        "etc/sudoers",
        b"root\tALL=(ALL) \tALL\n%wheel\tALL=(ALL)\tALL\n#includedir /etc/sudoers.d\n",
    );
    write(
        root,
        "etc/sudoers.d/90-cloud-init-users",
        b"# Created by cloud-init v. 19.4 on Tue, 01 Dec 2020 00:00:00 +0000\n\n\
          # User rules for centos\ncentos ALL=(ALL) NOPASSWD:ALL\n",
    );
    write(root, "usr/share/zoneinfo/UTC", b"TZif2 phony\n");
    symlink(root, "etc/localtime", "../usr/share/zoneinfo/UTC");
    write(
        root,
        "etc/selinux/config",
        b"SELINUX=permissive\nSELINUXTYPE=targeted\n",
    );
    write(
        root,
        "etc/sysconfig/network-scripts/ifcfg-eth0",
        b"DEVICE=\"eth0\"\nBOOTPROTO=\"dhcp\"\nONBOOT=\"yes\"\nTYPE=\"Ethernet\"\n",
    );
    std::fs::create_dir_all(root.join(format!("usr/lib/modules/{CENTOS_KERNEL}/kernel")))
        .expect("modules");
    systemd_units(
        root,
        &["sshd.service", "qemu-guest-agent.service", "crond.service"],
        &["sshd.service", "crond.service"],
        &[],
    );
    usr_merged(root, "%{_var}/lib/rpm");
    for dir in ["boot", "home/centos", "root", "tmp"] {
        std::fs::create_dir_all(root.join(dir)).expect("dir");
    }
}
