//! Linux facts end to end: phony guests (ext4 images made by `mkfs.ext4 -d` from a tree, no
//! root needed) holding a pacman database written by real pacman or an apk database in apk's
//! documented format, services, accounts, sudoers, network files of every tool and system
//! settings; inspected through `Disks::open` and `inspect`, the report compared with what was
//! put in.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use porthole_guest::Disks;
use porthole_inspect::packages::pacman;
use porthole_inspect::report::OperatingSystem;
use porthole_inspect::{inspect, Options};
use porthole_testkit::fsimage::{make, FsType};
use porthole_testkit::run;

fn write(root: &Path, rel: &str, data: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn symlink(root: &Path, rel: &str, target: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, path).unwrap();
}

/// A pacman package file made by hand (`.PKGINFO` + payload, gzip tar), which is all
/// `pacman -U` needs; makepkg refuses to run as root.
fn pacman_package(dir: &Path, name: &str, full_version: &str, desc: &str) -> PathBuf {
    let work = dir.join(format!("build-{name}"));
    write(&work, &format!("usr/share/{name}/README"), "payload\n");
    write(
        &work,
        ".PKGINFO",
        &format!(
            "pkgname = {name}\npkgbase = {name}\npkgver = {full_version}\npkgdesc = {desc}\n\
             url = https://example.org/{name}\nbuilddate = 1700000000\n\
             packager = Porthole Tests <tests@example.org>\nsize = 8\narch = x86_64\nlicense = MIT\n"
        ),
    );
    let file = dir.join(format!("{name}-{full_version}-x86_64.pkg.tar.gz"));
    run(
        "tar",
        "tar",
        &[
            "-C",
            work.to_str().unwrap(),
            "-czf",
            file.to_str().unwrap(),
            ".PKGINFO",
            "usr",
        ],
        None,
    );
    file
}

/// Installs the packages into `root` with real pacman (no scriptlets, no signatures).
fn pacman_install(root: &Path, work: &Path) {
    let conf = work.join("pacman.conf");
    std::fs::write(
        &conf,
        "[options]\nSigLevel = Never\nLocalFileSigLevel = Never\n",
    )
    .unwrap();
    let db = root.join("var/lib/pacman");
    std::fs::create_dir_all(&db).unwrap();
    let pkgs = [
        pacman_package(
            work,
            "hello-porthole",
            "1:2.3-4",
            "A phony package for porthole",
        ),
        pacman_package(work, "zlib-phony", "1.3.1-2", "Compression library, phony"),
    ];
    let mut args = vec![
        "-U".to_string(),
        "--noconfirm".into(),
        "--noscriptlet".into(),
        "--config".into(),
        conf.display().to_string(),
        "--dbpath".into(),
        db.display().to_string(),
        "--root".into(),
        root.display().to_string(),
        "--cachedir".into(),
        work.join("cache").display().to_string(),
        "--logfile".into(),
        work.join("pacman.log").display().to_string(),
        "--gpgdir".into(),
        work.join("gpg").display().to_string(),
    ];
    args.extend(pkgs.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("pacman", "pacman-package-manager", &args, None);
}

/// The accounts made by shadow-utils' own `useradd`/`usermod --prefix` (which edit the
/// files under a directory without chroot), over a base of root, daemon and three groups;
/// then a junk line the parser must skip with a warning.
fn accounts_by_shadow_utils(root: &Path) {
    write(
        root,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
",
    );
    write(
        root,
        "etc/shadow",
        "root:$6$salt$hash:19000:0:99999:7:::
daemon:*:19000::::::
",
    );
    write(
        root,
        "etc/group",
        "root:x:0:
wheel:x:10:
sudo:x:27:carol
",
    );
    write(
        root,
        "etc/gshadow",
        "root:*::
wheel:!::
sudo:!::carol
",
    );
    let prefix = root.to_str().unwrap();
    let tool = |tool: &str, args: &[&str]| {
        let mut all = vec!["-P", prefix];
        all.extend_from_slice(args);
        run(tool, "passwd", &all, None);
    };
    // A second uid-0 account with an empty password: the audit's first finding.
    tool(
        "useradd",
        &["-o", "-u", "0", "-g", "0", "-M", "-s", "/bin/sh", "toor"],
    );
    tool("usermod", &["-p", "", "toor"]);
    tool(
        "useradd",
        &[
            "-M",
            "-u",
            "1000",
            "-U",
            "-s",
            "/bin/bash",
            "-G",
            "wheel",
            "alice",
        ],
    );
    tool("usermod", &["-p", "$y$j9T$salt$hash", "alice"]);
    // useradd leaves a new account locked (`!`); bob's primary group is wheel.
    tool(
        "useradd",
        &["-M", "-u", "1001", "-g", "10", "-s", "/bin/zsh", "bob"],
    );
    let mut passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    passwd.push_str("this line is junk\n");
    std::fs::write(root.join("etc/passwd"), passwd).unwrap();
}

/// The accounts, services, network, system files both guests share.
fn common_tree(root: &Path) {
    write(root, "etc/hosts", "127.0.0.1 localhost\n");
    accounts_by_shadow_utils(root);
    write(
        root,
        "etc/sudoers",
        "Defaults env_reset\nroot ALL=(ALL:ALL) ALL\n%wheel ALL=(ALL:ALL) ALL\n\
         @includedir /etc/sudoers.d\n",
    );
    write(
        root,
        "etc/sudoers.d/deploy",
        "deploy ALL=(ALL) NOPASSWD: ALL\n",
    );
    write(root, "etc/sudoers.d/skipped.bak", "ignored ALL=(ALL) ALL\n");
    symlink(root, "etc/localtime", "/usr/share/zoneinfo/Europe/Paris");
    write(root, "boot/vmlinuz-6.1.0-18-amd64", "not really a kernel\n");
    std::fs::create_dir_all(root.join("usr/lib/modules/6.1.0-18-amd64/kernel")).unwrap();
    std::fs::create_dir_all(root.join("usr/lib/modules/6.1.0-17-amd64")).unwrap();
    write(
        root,
        "etc/selinux/config",
        "SELINUX=permissive\nSELINUXTYPE=targeted\n",
    );
    write(root, "etc/apparmor.d/usr.sbin.sshd", "profile sshd {}\n");
    write(root, "etc/apparmor.d/usr.bin.man", "profile man {}\n");
    std::fs::create_dir_all(root.join("etc/apparmor.d/abstractions")).unwrap();
    write(
        root,
        "etc/default/grub",
        "GRUB_CMDLINE_LINUX=\"quiet apparmor=0\"\n",
    );
    write(
        root,
        "etc/cloud/cloud.cfg",
        "users: [default]\ndatasource_list: [ NoCloud ]\n",
    );
    write(
        root,
        "etc/cloud/cloud.cfg.d/90_dpkg.cfg",
        "datasource_list: [ NoCloud, ConfigDrive, None ]\n",
    );
    write(
        root,
        "etc/cloud/cloud.cfg.d/99_broken.cfg",
        "datasource_list: [\x01\n",
    );
    write(root, "usr/bin/qemu-ga", "\x7fELF not really\n");
    write(root, "etc/porthole/agent.toml", "[transport]\n");
}

fn arch_tree(root: &Path, work: &Path) {
    common_tree(root);
    write(
        root,
        "etc/os-release",
        "NAME=\"Arch Linux\"\nID=arch\nBUILD_ID=rolling\n",
    );
    pacman_install(root, work);
    // A damaged record and a record without its desc cost only themselves.
    write(
        root,
        "var/lib/pacman/local/broken-1-1/desc",
        "%VERSION%\n1-1\n\x00\u{fffd}",
    );
    std::fs::create_dir_all(root.join("var/lib/pacman/local/nodesc-1-1")).unwrap();
    // Units enabled and masked by systemd's own `systemctl --root`, which only makes links.
    for unit in ["sshd.service", "qemu-guest-agent.service", "cups.service"] {
        write(
            root,
            &format!("usr/lib/systemd/system/{unit}"),
            "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
        );
    }
    let root_arg = format!("--root={}", root.display());
    let systemctl = |args: &[&str]| {
        let mut all = vec![root_arg.as_str()];
        all.extend_from_slice(args);
        run("systemctl", "systemd", &all, None);
    };
    systemctl(&["enable", "sshd.service", "qemu-guest-agent.service"]);
    systemctl(&["mask", "cups.service"]);
    symlink(
        root,
        "usr/lib/systemd/system/sysinit.target.wants/systemd-journald.service",
        "../systemd-journald.service",
    );
    // usr-merged: /lib is /usr/lib, read once.
    symlink(root, "lib", "usr/lib");
    write(
        root,
        "etc/netplan/50-cloud-init.yaml",
        "network:\n  version: 2\n  ethernets:\n    ens3:\n      dhcp4: true\n",
    );
    write(root, "etc/netplan/99-junk.yaml", "network: [\n");
    // Hostile: an oversized file (sparse) and a symlink loop where a directory is expected.
    let huge = std::fs::File::create(root.join("etc/netplan/60-huge.yaml")).unwrap();
    huge.set_len(3 << 20).unwrap();
    symlink(
        root,
        "etc/systemd/system/loop.target.wants",
        "loop.target.wants",
    );
    write(
        root,
        "etc/NetworkManager/system-connections/office.nmconnection",
        "[connection]\nid=office\ninterface-name=enp2s0\n[ipv4]\nmethod=manual\n\
         address1=203.0.113.5/24,203.0.113.1\ndns=203.0.113.53;\n",
    );
    write(
        root,
        "etc/systemd/network/20-wired.network",
        "[Match]\nName=enp3s0\n[Network]\nDHCP=yes\n",
    );
    write(
        root,
        "etc/sysconfig/network-scripts/ifcfg-eth1",
        "DEVICE=eth1\nBOOTPROTO=static\nIPADDR=198.51.100.7\nPREFIX=24\nGATEWAY=198.51.100.1\n",
    );
}

/// apk-tools is not in Debian 12: the database is written in the format apk-tools documents
/// (`apk-v2` installed database: `X:value` lines, blank-line separated).
fn alpine_tree(root: &Path) {
    common_tree(root);
    // Not usr-merged: /lib/modules lives in the real /lib.
    std::fs::create_dir_all(root.join("lib")).unwrap();
    std::fs::rename(root.join("usr/lib/modules"), root.join("lib/modules")).unwrap();
    write(
        root,
        "etc/os-release",
        "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n",
    );
    write(
        root,
        "lib/apk/db/installed",
        "C:Q1x=\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nS:1\nI:2\nT:the musl c library\n\
         U:https://musl.libc.org/\nL:MIT\no:musl\nm:Maintainer <m@example.org>\nF:lib\n\
         R:ld-musl-x86_64.so.1\na:0:0:755\nZ:Q1y=\n\n\
         P:qemu-guest-agent\nV:8.1.3-r0\nA:x86_64\nT:QEMU guest agent\no:qemu\n\n",
    );
    symlink(root, "etc/runlevels/default/sshd", "/etc/init.d/sshd");
    symlink(
        root,
        "etc/runlevels/default/qemu-guest-agent",
        "/etc/init.d/qemu-guest-agent",
    );
    symlink(root, "etc/runlevels/boot/hostname", "/etc/init.d/hostname");
    symlink(
        root,
        "etc/rc2.d/S01porthole-agent",
        "../init.d/porthole-agent",
    );
    symlink(root, "etc/rc2.d/K01gone", "../init.d/gone");
    write(
        root,
        "etc/network/interfaces",
        "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet static\n\
         \taddress 192.0.2.10\n\tnetmask 255.255.255.0\n\tgateway 192.0.2.1\n",
    );
    write(
        root,
        "etc/network/interfaces.d/eth1",
        "iface eth1 inet dhcp\n",
    );
    write(root, "etc/timezone", "Ignored/Because-localtime-links\n");
}

/// Builds the tree into an ext4 image and inspects it: the one OS found.
fn inspect_tree(build: impl FnOnce(&Path, &Path)) -> OperatingSystem {
    let dir = tempfile::tempdir().unwrap();
    let (root, work) = (dir.path().join("root"), dir.path().join("work"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    build(&root, &work);
    let image = dir.path().join("disk.raw");
    make(FsType::Ext4, &root, &image, 32);
    let disks = Disks::open(&[image]).unwrap();
    let mut report = inspect(&disks, Options::default());
    assert_eq!(report.operating_systems.len(), 1, "{report:?}");
    report.operating_systems.remove(0)
}

fn check_common(os: &OperatingSystem) {
    let accounts = os.accounts.as_ref().unwrap();
    let names: Vec<_> = accounts.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["root", "daemon", "toor", "alice", "bob"]);
    assert!(
        os.warnings
            .iter()
            .any(|w| w.contains("/etc/passwd: line 6")),
        "{:?}",
        os.warnings
    );
    assert_eq!(accounts.uid0_non_root, ["toor"]);
    assert_eq!(accounts.empty_passwords, ["toor"]);
    let states: Vec<_> = accounts.users.iter().map(|u| u.password).collect();
    use porthole_inspect::linux::accounts::PasswordState::{Empty, Locked, Set};
    assert_eq!(states, [Set, Locked, Empty, Set, Locked]);
    let login: Vec<_> = accounts
        .users
        .iter()
        .filter(|u| u.login_shell)
        .map(|u| u.name.as_str())
        .collect();
    assert_eq!(login, ["root", "toor", "alice", "bob"]);
    let admins: Vec<_> = accounts
        .admin_groups
        .iter()
        .map(|g| (g.group.as_str(), g.members.clone()))
        .collect();
    assert_eq!(
        admins,
        [
            ("wheel", vec!["alice".to_string(), "bob".into()]),
            ("sudo", vec!["carol".into()])
        ]
    );
    let rules: Vec<_> = accounts
        .sudo_rules
        .iter()
        .map(|r| {
            (
                r.source.as_str(),
                r.who.as_str(),
                r.all_commands,
                r.nopasswd,
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            ("/etc/sudoers", "root", true, false),
            ("/etc/sudoers", "%wheel", true, false),
            ("/etc/sudoers.d/deploy", "deploy", true, true),
        ]
    );
    let system = os.system.as_ref().unwrap();
    assert_eq!(system.timezone.as_deref(), Some("Europe/Paris"));
    let kernels: Vec<_> = system
        .kernels
        .iter()
        .map(|k| (k.version.as_str(), k.image.is_some(), k.modules))
        .collect();
    assert_eq!(
        kernels,
        [
            ("6.1.0-17-amd64", false, true),
            ("6.1.0-18-amd64", true, true)
        ]
    );
    let selinux = system.selinux.as_ref().unwrap();
    assert_eq!(
        (
            selinux.mode.as_deref(),
            selinux.policy.as_deref(),
            selinux.disabled_on_cmdline
        ),
        (Some("permissive"), Some("targeted"), false)
    );
    let apparmor = system.apparmor.as_ref().unwrap();
    assert_eq!((apparmor.profiles, apparmor.disabled_on_cmdline), (2, true));
    let cloud = system.cloud_init.as_ref().unwrap();
    assert_eq!(cloud.datasources, ["NoCloud", "ConfigDrive", "None"]);
    assert!(!cloud.disabled);
    assert!(
        os.warnings.iter().any(|w| w.contains("99_broken.cfg")),
        "{:?}",
        os.warnings
    );
    let agents: Vec<_> = system
        .agents
        .iter()
        .map(|a| (a.name.as_str(), a.evidence.as_str(), a.enabled))
        .collect();
    assert_eq!(
        agents,
        [
            ("qemu-guest-agent", "/usr/bin/qemu-ga", true),
            (
                "porthole-agent",
                "/etc/porthole/agent.toml",
                os.distro.as_deref() == Some("alpinelinux")
            ),
        ]
    );
}

#[test]
fn arch_guest_with_real_pacman_database() {
    let os = inspect_tree(arch_tree);
    assert_eq!(os.distro.as_deref(), Some("archlinux"));
    assert_eq!(os.package_format.as_deref(), Some("pacman"));
    let apps = os.applications.as_ref().unwrap();
    let got: Vec<_> = apps
        .iter()
        .map(|a| {
            (
                a.name.as_str(),
                a.epoch,
                a.version.as_deref(),
                a.release.as_deref(),
                a.arch.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("hello-porthole", 1, Some("2.3"), Some("4"), Some("x86_64")),
            ("zlib-phony", 0, Some("1.3.1"), Some("2"), Some("x86_64")),
        ]
    );
    assert_eq!(
        apps[0].summary.as_deref(),
        Some("A phony package for porthole")
    );
    assert_eq!(
        apps[0].url.as_deref(),
        Some("https://example.org/hello-porthole")
    );
    check_common(&os);
    let services: Vec<_> = os
        .services
        .as_ref()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.init.as_str(),
                s.state.as_str(),
                s.target.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        services,
        [
            ("cups.service", "systemd", "masked", None),
            (
                "qemu-guest-agent.service",
                "systemd",
                "enabled",
                Some("multi-user.target")
            ),
            (
                "sshd.service",
                "systemd",
                "enabled",
                Some("multi-user.target")
            ),
            (
                "systemd-journald.service",
                "systemd",
                "static",
                Some("sysinit.target")
            ),
        ]
    );
    let net: Vec<_> = os
        .network
        .as_ref()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i.tool.as_str(),
                i.interface.as_str(),
                i.method.as_deref(),
                i.addresses.join(","),
                i.gateway.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        net,
        [
            ("netplan", "ens3", Some("dhcp"), String::new(), None),
            (
                "networkmanager",
                "enp2s0",
                Some("static"),
                "203.0.113.5/24".into(),
                Some("203.0.113.1")
            ),
            ("networkd", "enp3s0", Some("dhcp"), String::new(), None),
            (
                "ifcfg",
                "eth1",
                Some("static"),
                "198.51.100.7/24".into(),
                Some("198.51.100.1")
            ),
        ]
    );
    assert!(
        os.warnings.iter().any(|w| w.contains("99-junk.yaml")),
        "{:?}",
        os.warnings
    );
}

#[test]
fn alpine_guest_with_apk_database() {
    let os = inspect_tree(|root, _| alpine_tree(root));
    assert_eq!(os.distro.as_deref(), Some("alpinelinux"));
    let apps = os.applications.as_ref().unwrap();
    let got: Vec<_> = apps
        .iter()
        .map(|a| {
            (
                a.name.as_str(),
                a.version.as_deref(),
                a.release.as_deref(),
                a.source_package.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("musl", Some("1.2.4_git20230717"), Some("r4"), Some("musl")),
            ("qemu-guest-agent", Some("8.1.3"), Some("r0"), Some("qemu")),
        ]
    );
    check_common(&os);
    let services: Vec<_> = os
        .services
        .as_ref()
        .unwrap()
        .iter()
        .map(|s| (s.name.as_str(), s.init.as_str(), s.target.as_deref()))
        .collect();
    assert_eq!(
        services,
        [
            ("hostname", "openrc", Some("boot")),
            ("qemu-guest-agent", "openrc", Some("default")),
            ("sshd", "openrc", Some("default")),
            ("porthole-agent", "sysv", Some("rc2")),
        ]
    );
    let net = os.network.as_ref().unwrap();
    let got: Vec<_> = net
        .iter()
        .map(|i| {
            (
                i.interface.as_str(),
                i.method.as_deref(),
                i.addresses.join(","),
                i.gateway.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("lo", Some("loopback"), String::new(), None),
            (
                "eth0",
                Some("static"),
                "192.0.2.10/24".into(),
                Some("192.0.2.1")
            ),
            ("eth1", Some("dhcp"), String::new(), None),
        ]
    );
}

/// The pacman database as real pacman lists it (`pacman -Q`) against porthole's parse of the
/// same directory.
#[test]
fn pacman_database_matches_pacman_query() {
    let dir = tempfile::tempdir().unwrap();
    let (root, work) = (dir.path().join("root"), dir.path().join("work"));
    std::fs::create_dir_all(&work).unwrap();
    pacman_install(&root, &work);
    let db = root.join("var/lib/pacman");
    let listed = run(
        "pacman",
        "pacman-package-manager",
        &[
            "-Q",
            "--dbpath",
            db.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ],
        None,
    );
    let mut entries = Vec::new();
    for e in std::fs::read_dir(db.join("local")).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            let desc = std::fs::read(e.path().join("desc")).unwrap();
            entries.push((e.file_name().to_string_lossy().into_owned(), desc));
        }
    }
    entries.sort();
    let parsed = pacman::parse_database(&entries);
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let got: Vec<String> = parsed
        .applications
        .iter()
        .map(|a| {
            let epoch = if a.epoch != 0 {
                format!("{}:", a.epoch)
            } else {
                String::new()
            };
            format!(
                "{} {epoch}{}-{}",
                a.name,
                a.version.as_deref().unwrap_or_default(),
                a.release.as_deref().unwrap_or_default()
            )
        })
        .collect();
    let want: Vec<&str> = listed.lines().collect();
    assert_eq!(want.len(), 2, "{listed}");
    assert_eq!(got, want);
}
