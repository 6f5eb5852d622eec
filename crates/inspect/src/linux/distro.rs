//! Which Linux distribution a root holds, from the files distributions leave in `/etc`, with
//! virt-inspector's precedence: `/etc/os-release` first, then `/etc/lsb-release`, then each
//! family's own release file. A file that says nothing useful (os-release without an ID, a
//! Debian testing os-release without a version) lets the next source decide or fill in.

use porthole_guest::GuestView;

/// Release files are a line or two; anything larger is not one.
const RELEASE_FILE_LIMIT: u64 = 64 << 10;

/// What the release files say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Distro {
    /// virt-inspector's distro name: debian, ubuntu, fedora, rhel, centos, rocky, alma,
    /// oraclelinux, opensuse, sles, alpinelinux, archlinux, gentoo, ...
    pub distro: String,
    pub product_name: Option<String>,
    pub product_variant: Option<String>,
    pub major: u32,
    pub minor: u32,
}

/// The distribution of the Linux root in `view`, or `None` when no release file names one.
pub fn detect(view: &GuestView, warnings: &mut Vec<String>) -> Option<Distro> {
    let mut read = |path: &str| match view.read_file(path.as_bytes(), RELEASE_FILE_LIMIT) {
        Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Err(porthole_guest::Error::NotFound { .. }) => None,
        Err(e) => {
            warnings.push(format!("{path}: {e}"));
            None
        }
    };
    let mut found = read("/etc/os-release")
        .or_else(|| read("/usr/lib/os-release"))
        .and_then(|text| from_os_release(&text));
    if let Some(distro) = found.as_mut() {
        if let Some(path) = release_file_trusted_over_os_release(distro) {
            if let Some(text) = read(path) {
                refine_from_release_file(distro, &text);
            }
        }
    }
    if found.is_none() {
        found = read("/etc/lsb-release").and_then(|text| from_lsb_release(&text));
    }
    if found.is_none() {
        for (path, parse) in RELEASE_FILES {
            if let Some(distro) = read(path).and_then(|text| parse(&text)) {
                found = Some(distro);
                break;
            }
        }
    }
    // Debian testing and sid carry no VERSION_ID; debian_version has "13.1" or "trixie/sid".
    if let Some(distro) = found
        .as_mut()
        .filter(|d| d.distro == "debian" && d.major == 0)
    {
        if let Some((major, minor)) = read("/etc/debian_version").and_then(|t| version_of(&t)) {
            (distro.major, distro.minor) = (major, minor);
        }
    }
    found
}

/// Debian's and CentOS's os-release carry only the major version (`VERSION_ID="12"`), so
/// virt-inspector distrusts an os-release of theirs without a minor version and lets the
/// family's own release file decide: which file that is, for `distro`.
fn release_file_trusted_over_os_release(distro: &Distro) -> Option<&'static str> {
    if distro.minor != 0 {
        return None;
    }
    match distro.distro.as_str() {
        "debian" => Some("/etc/debian_version"),
        "centos" => Some("/etc/centos-release"),
        _ => None,
    }
}

/// virt-inspector's reading of a release file after os-release: its first line becomes the
/// product name (`12.4`, `CentOS Linux release 7.9.2009 (Core)`) and the version is taken
/// from it when it holds one (`trixie/sid` keeps os-release's). A CentOS release file must
/// name CentOS, or virt-inspector ignores it.
fn refine_from_release_file(distro: &mut Distro, text: &str) {
    let Some(line) = text.lines().next().filter(|l| !l.is_empty()) else {
        return;
    };
    if distro.distro == "centos" && !line.contains("CentOS") {
        return;
    }
    distro.product_name = Some(line.to_string());
    if let Some((major, minor)) = version_of(line) {
        (distro.major, distro.minor) = (major, minor);
    }
}

type ReleaseParser = fn(&str) -> Option<Distro>;

/// The per-family release files, in virt-inspector's order of trust.
const RELEASE_FILES: &[(&str, ReleaseParser)] = &[
    ("/etc/oracle-release", from_redhat_release),
    ("/etc/fedora-release", from_redhat_release),
    ("/etc/redhat-release", from_redhat_release),
    ("/etc/debian_version", from_debian_version),
    ("/etc/alpine-release", from_alpine_release),
    ("/etc/SuSE-release", from_suse_release),
    ("/etc/arch-release", |_| Some(named("archlinux", None))),
    ("/etc/gentoo-release", from_gentoo_release),
];

fn named(distro: &str, product_name: Option<String>) -> Distro {
    Distro {
        distro: distro.to_string(),
        product_name,
        ..Distro::default()
    }
}

/// The first `MAJOR[.MINOR]` number pair in `text`.
fn version_of(text: &str) -> Option<(u32, u32)> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let mut parts = text[start..]
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()?
        .split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// os-release's `ID` as virt-inspector names the distribution.
fn distro_of_os_release_id(id: &str) -> Option<&'static str> {
    Some(match id {
        "alpine" => "alpinelinux",
        "altlinux" => "altlinux",
        "arch" => "archlinux",
        "centos" => "centos",
        "debian" => "debian",
        "fedora" => "fedora",
        "gentoo" => "gentoo",
        "kali" => "kalilinux",
        "linuxmint" => "linuxmint",
        "mageia" => "mageia",
        "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" => "opensuse",
        "ol" => "oraclelinux",
        "rhel" => "rhel",
        "rocky" => "rocky",
        "almalinux" => "alma",
        "sles" | "sled" => "sles",
        "ubuntu" => "ubuntu",
        "void" => "voidlinux",
        _ => return None,
    })
}

fn from_os_release(text: &str) -> Option<Distro> {
    let vars = porthole_shellvars::parse(text);
    let distro = distro_of_os_release_id(vars.get("ID")?)?;
    let (major, minor) = vars
        .get("VERSION_ID")
        .and_then(|v| version_of(v))
        .unwrap_or((0, 0));
    Some(Distro {
        distro: distro.to_string(),
        product_name: vars.get("PRETTY_NAME").or(vars.get("NAME")).cloned(),
        product_variant: vars.get("VARIANT").cloned(),
        major,
        minor,
    })
}

fn from_lsb_release(text: &str) -> Option<Distro> {
    let vars = porthole_shellvars::parse(text);
    let distro = match vars.get("DISTRIB_ID")?.as_str() {
        "Ubuntu" => "ubuntu",
        "LinuxMint" => "linuxmint",
        "Debian" => "debian",
        _ => return None,
    };
    let (major, minor) = vars
        .get("DISTRIB_RELEASE")
        .and_then(|v| version_of(v))
        .unwrap_or((0, 0));
    Some(Distro {
        major,
        minor,
        ..named(distro, vars.get("DISTRIB_DESCRIPTION").cloned())
    })
}

/// "Red Hat Enterprise Linux Server release 7.9 (Maipo)", "CentOS Linux release 7.9.2009
/// (Core)", "Fedora release 38 (Thirty Eight)", "Rocky Linux release 8.8 (Green Obsidian)".
fn from_redhat_release(text: &str) -> Option<Distro> {
    let line = text.lines().next()?.trim();
    let families = [
        ("Red Hat Enterprise Linux", "rhel"),
        ("CentOS Stream", "centos"),
        ("CentOS", "centos"),
        ("Fedora", "fedora"),
        ("Rocky Linux", "rocky"),
        ("AlmaLinux", "alma"),
        ("Oracle Linux", "oraclelinux"),
        ("Scientific Linux", "scientificlinux"),
    ];
    let distro = families
        .iter()
        .find(|(prefix, _)| line.starts_with(prefix))
        .map_or("redhat-based", |(_, d)| d);
    let (major, minor) = line
        .split_once(" release ")
        .and_then(|(_, rest)| version_of(rest))
        .unwrap_or((0, 0));
    Some(Distro {
        major,
        minor,
        ..named(distro, Some(line.to_string()))
    })
}

fn from_debian_version(text: &str) -> Option<Distro> {
    let (major, minor) = version_of(text.lines().next()?).unwrap_or((0, 0));
    Some(Distro {
        major,
        minor,
        ..named("debian", None)
    })
}

fn from_alpine_release(text: &str) -> Option<Distro> {
    let (major, minor) = version_of(text)?;
    Some(Distro {
        major,
        minor,
        ..named("alpinelinux", None)
    })
}

/// "SUSE Linux Enterprise Server 12 (x86_64)\nVERSION = 12\nPATCHLEVEL = 5" or
/// "openSUSE 13.1 (x86_64)\nVERSION = 13.1".
fn from_suse_release(text: &str) -> Option<Distro> {
    let first = text.lines().next()?.trim();
    let distro = if first.starts_with("openSUSE") {
        "opensuse"
    } else if first.starts_with("SUSE Linux Enterprise") {
        "sles"
    } else {
        "suse-based"
    };
    let value = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let (major, mut minor) = value("VERSION")
        .and_then(|v| version_of(&v))
        .unwrap_or((0, 0));
    if let Some(patch) = value("PATCHLEVEL").and_then(|p| p.parse().ok()) {
        minor = patch;
    }
    Some(Distro {
        major,
        minor,
        ..named(distro, Some(first.to_string()))
    })
}

fn from_gentoo_release(text: &str) -> Option<Distro> {
    let line = text.lines().next()?.trim();
    let (major, minor) = version_of(line).unwrap_or((0, 0));
    Some(Distro {
        major,
        minor,
        ..named("gentoo", Some(line.to_string()))
    })
}

/// The package format and manager of a distribution, as virt-inspector names them.
/// `dnf_installed`: whether `/usr/bin/dnf` is a file (after symlinks) in the guest, which is
/// what tells dnf from yum on Fedora 22 and later for virt-inspector.
pub fn package_tools(
    distro: &Distro,
    dnf_installed: bool,
) -> (Option<&'static str>, Option<&'static str>) {
    let major = distro.major;
    match distro.distro.as_str() {
        "debian" | "ubuntu" | "linuxmint" | "kalilinux" => (Some("deb"), Some("apt")),
        "fedora" => (
            Some("rpm"),
            match major {
                22.. if dnf_installed => Some("dnf"),
                1.. => Some("yum"),
                // The release file did not parse (virt-inspector says nothing either).
                0 => None,
            },
        ),
        "rhel" | "centos" | "rocky" | "alma" | "oraclelinux" | "scientificlinux"
        | "redhat-based" => (
            Some("rpm"),
            match major {
                8.. => Some("dnf"),
                5.. => Some("yum"),
                2.. => Some("up2date"),
                _ => None,
            },
        ),
        "opensuse" | "sles" | "suse-based" => (Some("rpm"), Some("zypper")),
        "mageia" => (Some("rpm"), Some("urpmi")),
        "altlinux" => (Some("rpm"), Some("apt")),
        "alpinelinux" => (Some("apk"), Some("apk")),
        "archlinux" => (Some("pacman"), Some("pacman")),
        "gentoo" => (Some("ebuild"), Some("portage")),
        "voidlinux" => (Some("xbps"), Some("xbps")),
        _ => (None, None),
    }
}

/// libosinfo's short id for a distribution version, where libosinfo has one.
pub fn osinfo(distro: &Distro) -> Option<String> {
    let (major, minor) = (distro.major, distro.minor);
    Some(match distro.distro.as_str() {
        "debian" if major >= 4 => format!("debian{major}"),
        "ubuntu" if major > 0 => format!("ubuntu{major}.{minor:02}"),
        "fedora" if major > 0 => format!("fedora{major}"),
        "rhel" if major > 0 => format!("rhel{major}.{minor}"),
        "centos" if major >= 8 => format!("centos{major}"),
        // libosinfo has one entry for all of CentOS 7, as virt-inspector names it.
        "centos" if major == 7 => "centos7.0".to_string(),
        "centos" if major > 0 => format!("centos{major}.{minor}"),
        "rocky" if major > 0 => format!("rocky{major}.{minor}"),
        "alma" if major > 0 => format!("almalinux{major}.{minor}"),
        "oraclelinux" if major > 0 => format!("ol{major}.{minor}"),
        "opensuse" if major > 0 => format!("opensuse{major}.{minor}"),
        "sles" if minor == 0 && major > 0 => format!("sles{major}"),
        "sles" if major > 0 => format!("sles{major}sp{minor}"),
        "alpinelinux" if major > 0 => format!("alpinelinux{major}.{minor}"),
        "archlinux" => "archlinux".to_string(),
        "gentoo" => "gentoo".to_string(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_names_and_versions() {
        let debian = from_os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
        )
        .expect("debian");
        assert_eq!(debian.distro, "debian");
        assert_eq!((debian.major, debian.minor), (12, 0));
        assert_eq!(
            debian.product_name.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(osinfo(&debian).as_deref(), Some("debian12"));
        assert_eq!(package_tools(&debian, false), (Some("deb"), Some("apt")));
        let ubuntu = from_os_release("ID=ubuntu\nVERSION_ID=\"22.04\"\n").expect("ubuntu");
        assert_eq!(osinfo(&ubuntu).as_deref(), Some("ubuntu22.04"));
        let alpine = from_os_release("ID=alpine\nVERSION_ID=3.18.4\n").expect("alpine");
        assert_eq!(
            (alpine.distro.as_str(), alpine.major, alpine.minor),
            ("alpinelinux", 3, 18)
        );
        assert!(from_os_release("ID=plan9\n").is_none());
        assert!(from_os_release("NAME=nothing\n").is_none());
    }

    #[test]
    fn redhat_family_release_lines() {
        let cases = [
            (
                "Red Hat Enterprise Linux Server release 7.9 (Maipo)",
                "rhel",
                7,
                9,
                "yum",
            ),
            (
                "CentOS Linux release 7.9.2009 (Core)",
                "centos",
                7,
                9,
                "yum",
            ),
            ("Fedora release 38 (Thirty Eight)", "fedora", 38, 0, "dnf"),
            (
                "Rocky Linux release 8.8 (Green Obsidian)",
                "rocky",
                8,
                8,
                "dnf",
            ),
            (
                "AlmaLinux release 9.2 (Turquoise Kodkod)",
                "alma",
                9,
                2,
                "dnf",
            ),
            (
                "Oracle Linux Server release 7.9",
                "oraclelinux",
                7,
                9,
                "yum",
            ),
        ];
        for (line, distro, major, minor, manager) in cases {
            let d = from_redhat_release(line).expect(line);
            assert_eq!(
                (d.distro.as_str(), d.major, d.minor),
                (distro, major, minor),
                "{line}"
            );
            assert_eq!(
                package_tools(&d, true),
                (Some("rpm"), Some(manager)),
                "{line}"
            );
        }
    }

    #[test]
    fn debian_and_centos_versions_come_from_their_release_files() {
        let os_release = |id: &str, version: &str| {
            from_os_release(&format!(
                "PRETTY_NAME=\"{id} {version}\"\nID={id}\nVERSION_ID=\"{version}\"\n"
            ))
            .expect(id)
        };
        let mut debian = os_release("debian", "12");
        assert_eq!(
            release_file_trusted_over_os_release(&debian),
            Some("/etc/debian_version")
        );
        refine_from_release_file(&mut debian, "12.4\n");
        assert_eq!(debian.product_name.as_deref(), Some("12.4"));
        assert_eq!((debian.major, debian.minor), (12, 4));
        assert_eq!(osinfo(&debian).as_deref(), Some("debian12"));

        let mut sid = os_release("debian", "");
        refine_from_release_file(&mut sid, "trixie/sid\n");
        assert_eq!(sid.product_name.as_deref(), Some("trixie/sid"));
        assert_eq!((sid.major, sid.minor), (0, 0));

        let mut centos = os_release("centos", "7");
        assert_eq!(
            release_file_trusted_over_os_release(&centos),
            Some("/etc/centos-release")
        );
        refine_from_release_file(&mut centos, "CentOS Linux release 7.9.2009 (Core)\n");
        assert_eq!((centos.major, centos.minor), (7, 9));
        let mut odd = os_release("centos", "8");
        refine_from_release_file(&mut odd, "Something else 9.9\n");
        assert_eq!((odd.major, odd.minor), (8, 0));
        assert_eq!(odd.product_name.as_deref(), Some("centos 8"));

        // A minor version, or another distribution, keeps os-release's word.
        assert_eq!(
            release_file_trusted_over_os_release(&os_release("ubuntu", "22.04")),
            None
        );
        assert_eq!(
            release_file_trusted_over_os_release(&os_release("debian", "12.1")),
            None
        );
        assert_eq!(
            release_file_trusted_over_os_release(&os_release("fedora", "38")),
            None
        );
    }

    #[test]
    fn other_release_files() {
        let sles = from_suse_release(
            "SUSE Linux Enterprise Server 12 (x86_64)\nVERSION = 12\nPATCHLEVEL = 5\n",
        )
        .expect("sles");
        assert_eq!(
            (sles.distro.as_str(), sles.major, sles.minor),
            ("sles", 12, 5)
        );
        assert_eq!(osinfo(&sles).as_deref(), Some("sles12sp5"));
        let deb = from_debian_version("trixie/sid\n").expect("debian");
        assert_eq!((deb.major, deb.minor), (0, 0));
        let deb = from_debian_version("11.7\n").expect("debian");
        assert_eq!((deb.major, deb.minor), (11, 7));
        let lsb = from_lsb_release("DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=20.04\nDISTRIB_DESCRIPTION=\"Ubuntu 20.04.6 LTS\"\n")
            .expect("ubuntu");
        assert_eq!(
            (lsb.distro.as_str(), lsb.major, lsb.minor),
            ("ubuntu", 20, 4)
        );
        assert_eq!(version_of("release 99999999999"), None);
    }

    /// virt-inspector's rules: Fedora says dnf only when /usr/bin/dnf is there; the RHEL
    /// family goes by major version; CentOS 7 is one libosinfo entry.
    #[test]
    fn dnf_yum_up2date_and_centos7_osinfo_as_virt_inspector() {
        let fedora = from_redhat_release("Fedora release 40 (Forty)").expect("fedora");
        assert_eq!(package_tools(&fedora, true).1, Some("dnf"));
        assert_eq!(package_tools(&fedora, false).1, Some("yum"));
        let rhel4 = from_redhat_release("Red Hat Enterprise Linux AS release 4 (Nahant)");
        assert_eq!(
            package_tools(&rhel4.expect("rhel 4"), false).1,
            Some("up2date")
        );
        let centos = from_redhat_release("CentOS Linux release 7.9.2009 (Core)").expect("7");
        assert_eq!(osinfo(&centos).as_deref(), Some("centos7.0"));
        let centos6 = from_redhat_release("CentOS release 6.10 (Final)").expect("6");
        assert_eq!(osinfo(&centos6).as_deref(), Some("centos6.10"));
    }
}
