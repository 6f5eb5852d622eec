//! Which Windows a SOFTWARE hive belongs to, from `Microsoft\Windows NT\CurrentVersion`, as
//! virt-inspector reads it, and the libosinfo short id virt-inspector derives from that.

use super::hive::{Hive, Key};
use super::Read;

/// The key holding the version facts, relative to the SOFTWARE hive's root.
pub const CURRENT_VERSION: &str = r"Microsoft\Windows NT\CurrentVersion";

/// What `CurrentVersion` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowsVersion {
    /// `ProductName`, as the registry has it (Windows 11 still says "Windows 10 ...": see
    /// [`WindowsVersion::osinfo`]).
    pub product_name: Option<String>,
    /// `InstallationType` ("Client", "Server", "Server Core"), which virt-inspector prints as
    /// `product_variant`.
    pub product_variant: Option<String>,
    /// `EditionID` ("Professional", "ServerStandard", ...).
    pub edition_id: Option<String>,
    /// `CurrentMajorVersionNumber` (Windows 10 and later), else `CurrentVersion`'s first part.
    pub major_version: u32,
    pub minor_version: u32,
    /// `CurrentBuildNumber` (or `CurrentBuild`).
    pub build: Option<u32>,
    /// The libosinfo short id (win7, win10, win11, win2k22, ...), `None` when unknown.
    pub osinfo: Option<String>,
}

/// The version facts of a SOFTWARE hive's bytes. A missing key or value leaves its field
/// empty; damage is a warning.
pub fn read_software(software: &[u8]) -> Read<WindowsVersion> {
    let mut read = Read::default();
    let hive = match Hive::new(software) {
        Ok(hive) => hive,
        Err(e) => {
            read.warnings.push(format!("SOFTWARE: {e}"));
            return read;
        }
    };
    read.warnings
        .extend(hive.warnings().iter().map(|w| format!("SOFTWARE: {w}")));
    match hive.open(CURRENT_VERSION) {
        Ok(Some(key)) => read.facts = from_key(&key, &mut read.warnings),
        Ok(None) => read
            .warnings
            .push(format!("SOFTWARE: no {CURRENT_VERSION} key")),
        Err(e) => read
            .warnings
            .push(format!("SOFTWARE: {CURRENT_VERSION}: {e}")),
    }
    read
}

fn from_key(key: &Key<'_, '_>, warnings: &mut Vec<String>) -> WindowsVersion {
    let mut get = |name: &str| match key.value(name) {
        Ok(value) => value,
        Err(e) => {
            warnings.push(format!("SOFTWARE: {CURRENT_VERSION}: {e}"));
            None
        }
    };
    let string = |v: Option<super::hive::Value>| v.and_then(|v| v.string());
    let product_name = string(get("ProductName"));
    let product_variant = string(get("InstallationType"));
    let edition_id = string(get("EditionID"));
    let major = get("CurrentMajorVersionNumber").and_then(|v| v.dword());
    let minor = get("CurrentMinorVersionNumber").and_then(|v| v.dword());
    // Both DWORDs or neither, as virt-inspector: Windows 10 still says "6.3" in CurrentVersion.
    let (major_version, minor_version) = match (major, minor) {
        (Some(major), Some(minor)) => (major, minor),
        _ => string(get("CurrentVersion"))
            .and_then(|v| split_version(&v))
            .unwrap_or_default(),
    };
    let build = string(get("CurrentBuildNumber"))
        .or_else(|| string(get("CurrentBuild")))
        .and_then(|b| b.trim().parse().ok());
    let mut version = WindowsVersion {
        product_name,
        product_variant,
        edition_id,
        major_version,
        minor_version,
        build,
        osinfo: None,
    };
    version.osinfo = version.osinfo_id().map(str::to_string);
    version
}

/// "6.3" → (6, 3).
fn split_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once('.').unwrap_or((text.trim(), "0"));
    Some((major.parse().ok()?, minor.parse().ok()?))
}

impl WindowsVersion {
    /// True for server editions: `InstallationType` contains "Server" (as libguestfs checks);
    /// hives without `InstallationType` (Vista, Server 2008) fall back on the product name.
    fn is_server(&self) -> bool {
        match &self.product_variant {
            Some(variant) => variant.contains("Server"),
            None => self
                .product_name
                .as_deref()
                .is_some_and(|n| n.contains("Server")),
        }
    }

    /// The libosinfo short id, derived as libguestfs's `inspect_get_osinfo` does: from the
    /// version numbers, server or client, the year in a server's product name and, for 10.0
    /// clients, the build (Windows 11 is 10.0 with build 22000 or later).
    fn osinfo_id(&self) -> Option<&'static str> {
        let server = self.is_server();
        let name = self.product_name.as_deref().unwrap_or_default();
        Some(match (self.major_version, self.minor_version) {
            (5, 1) => "winxp",
            (5, 2) if name.contains("XP") => "winxp",
            (5, 2) if name.contains("R2") => "win2k3r2",
            (5, 2) => "win2k3",
            (6, 0) if server => "win2k8",
            (6, 0) => "winvista",
            (6, 1) if server => "win2k8r2",
            (6, 1) => "win7",
            (6, 2) if server => "win2k12",
            (6, 2) => "win8",
            (6, 3) if server => "win2k12r2",
            (6, 3) => "win8.1",
            (10, 0) if server && name.contains("2025") => "win2k25",
            (10, 0) if server && name.contains("2022") => "win2k22",
            (10, 0) if server && name.contains("2019") => "win2k19",
            (10, 0) if server => "win2k16",
            (10, 0) if self.build? >= 22000 => "win11",
            (10, 0) => "win10",
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(major: u32, minor: u32, variant: &str, name: &str, build: u32) -> WindowsVersion {
        WindowsVersion {
            product_name: Some(name.into()),
            product_variant: (!variant.is_empty()).then(|| variant.into()),
            major_version: major,
            minor_version: minor,
            build: Some(build),
            ..WindowsVersion::default()
        }
    }

    #[test]
    fn osinfo_ids_follow_libguestfs() {
        let cases = [
            (6, 1, "Client", "Windows 7 Professional", 7601, "win7"),
            (
                6,
                1,
                "",
                "Windows Server 2008 R2 Standard",
                7601,
                "win2k8r2",
            ),
            (
                6,
                3,
                "Server",
                "Windows Server 2012 R2 Datacenter",
                9600,
                "win2k12r2",
            ),
            (6, 3, "Client", "Windows 8.1 Pro", 9600, "win8.1"),
            (10, 0, "Client", "Windows 10 Pro", 19045, "win10"),
            (10, 0, "Client", "Windows 10 Pro", 22631, "win11"),
            (
                10,
                0,
                "Server",
                "Windows Server 2016 Standard",
                14393,
                "win2k16",
            ),
            (
                10,
                0,
                "Server Core",
                "Windows Server 2019 Datacenter",
                17763,
                "win2k19",
            ),
            (
                10,
                0,
                "Server",
                "Windows Server 2022 Standard",
                20348,
                "win2k22",
            ),
            (
                10,
                0,
                "Server",
                "Windows Server 2025 Datacenter",
                26100,
                "win2k25",
            ),
        ];
        for (major, minor, variant, name, build, id) in cases {
            let v = version(major, minor, variant, name, build);
            assert_eq!(v.osinfo_id(), Some(id), "{name} {build}");
        }
        let mut no_build = version(10, 0, "Client", "Windows 10 Pro", 0);
        no_build.build = None;
        assert_eq!(no_build.osinfo_id(), None);
        assert_eq!(version(4, 0, "", "NT", 1381).osinfo_id(), None);
    }

    #[test]
    fn current_version_strings() {
        assert_eq!(split_version("6.1"), Some((6, 1)));
        assert_eq!(split_version(" 5.2 "), Some((5, 2)));
        assert_eq!(split_version("10"), Some((10, 0)));
        assert_eq!(split_version("x.1"), None);
    }
}
