//! Facts about the guest: OS, host name, time zone, clock, logged-in users.

use super::{blocking, errno_text, to_value};
use crate::agent::Agent;
use porthole_proto::commands::{HostName, OsInfo, SetTimeArgs, Timezone, User};
use porthole_proto::CommandError;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// qemu-ga's test hook: `QGA_OS_RELEASE` names the os-release file to read.
fn os_release_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("QGA_OS_RELEASE") {
        return Some(PathBuf::from(path));
    }
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

pub async fn osinfo(_agent: Arc<Agent>, _args: super::NoArgs) -> Result<Value, CommandError> {
    blocking(|| {
        let mut info = OsInfo::default();
        if let Ok(uts) = nix::sys::utsname::uname() {
            info.kernel_release = Some(uts.release().to_string_lossy().into_owned());
            info.kernel_version = Some(uts.version().to_string_lossy().into_owned());
            info.machine = Some(uts.machine().to_string_lossy().into_owned());
        }
        if let Some(fields) = os_release_path().and_then(|p| read_os_release(&p)) {
            let get = |key: &str| fields.get(key).cloned();
            info.id = get("ID");
            info.name = get("NAME");
            info.pretty_name = get("PRETTY_NAME");
            info.version = get("VERSION");
            info.version_id = get("VERSION_ID");
            info.variant = get("VARIANT");
            info.variant_id = get("VARIANT_ID");
        }
        to_value(info)
    })
    .await
}

/// os-release is a shell-compatible list of assignments; a guest may write odd quoting.
/// Files over 64 KiB are not os-release files and are ignored.
fn read_os_release(path: &Path) -> Option<BTreeMap<String, String>> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > 64 << 10 {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    Some(porthole_shellvars::parse(&text))
}

pub async fn host_name(_agent: Arc<Agent>, _args: super::NoArgs) -> Result<Value, CommandError> {
    let name = nix::unistd::gethostname().map_err(|e| {
        CommandError::failed(format!(
            "cannot get host name: {}",
            super::strerror(e as i32)
        ))
    })?;
    to_value(HostName {
        host_name: name.to_string_lossy().into_owned(),
    })
}

pub async fn timezone(_agent: Arc<Agent>, _args: super::NoArgs) -> Result<Value, CommandError> {
    blocking(|| {
        let (zone, offset) = local_zone()?;
        to_value(Timezone { zone, offset })
    })
    .await
}

/// The local zone's abbreviation and offset east of UTC, now.
fn local_zone() -> Result<(Option<String>, i64), CommandError> {
    // SAFETY: time(NULL) has no preconditions; localtime_r only writes the tm we own, and tm_zone
    // points at static zone data in libc (valid for the process lifetime) or is null.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return Err(CommandError::failed("cannot determine the local time zone"));
        }
        let zone = (!tm.tm_zone.is_null()).then(|| {
            std::ffi::CStr::from_ptr(tm.tm_zone)
                .to_string_lossy()
                .into_owned()
        });
        Ok((zone, tm.tm_gmtoff))
    }
}

pub async fn get_time(_agent: Arc<Agent>, _args: super::NoArgs) -> Result<Value, CommandError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| CommandError::failed("the clock is before 1970"))?;
    Ok(Value::from(
        i64::try_from(now.as_nanos()).unwrap_or(i64::MAX),
    ))
}

pub async fn set_time(_agent: Arc<Agent>, args: SetTimeArgs) -> Result<Value, CommandError> {
    blocking(move || {
        if let Some(ns) = args.time {
            let spec = nix::sys::time::TimeSpec::new(
                ns.div_euclid(1_000_000_000),
                ns.rem_euclid(1_000_000_000),
            );
            nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, spec).map_err(|e| {
                CommandError::failed(format!(
                    "Failed to set time to guest: {}",
                    super::strerror(e as i32)
                ))
            })?;
        }
        // With a time, the RTC follows the system clock; without, the system clock follows the RTC.
        let flag = if args.time.is_some() { "-w" } else { "-s" };
        run_hwclock(flag)?;
        Ok(serde_json::json!({}))
    })
    .await
}

fn run_hwclock(flag: &str) -> Result<(), CommandError> {
    let program = ["/sbin/hwclock", "/usr/sbin/hwclock"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("hwclock");
    let status = std::process::Command::new(program)
        .arg(flag)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| CommandError::failed(format!("cannot run {program}: {}", errno_text(&e))))?;
    if status.success() {
        Ok(())
    } else {
        Err(CommandError::failed(format!(
            "hwclock failed to {}: {status}",
            if flag == "-w" {
                "set hardware clock to system time"
            } else {
                "set system time from hardware clock"
            }
        )))
    }
}

/// glibc's utmp record on Linux (x86_64 and aarch64 share it: 32-bit time fields).
const UTMP_RECORD: usize = 384;
const USER_PROCESS: i16 = 7;
/// Bounds the read of a hostile or runaway utmp.
const UTMP_LIMIT: u64 = 16 << 20;

pub async fn users(_agent: Arc<Agent>, _args: super::NoArgs) -> Result<Value, CommandError> {
    blocking(|| {
        let data = ["/run/utmp", "/var/run/utmp"]
            .iter()
            .find_map(|p| read_bounded(Path::new(p), UTMP_LIMIT))
            .unwrap_or_default();
        to_value(parse_utmp(&data))
    })
    .await
}

fn read_bounded(path: &Path, limit: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut data = Vec::new();
    file.take(limit).read_to_end(&mut data).ok()?;
    Some(data)
}

/// One entry per user with their earliest login, as qemu-ga reports (sorted by name here).
pub fn parse_utmp(data: &[u8]) -> Vec<User> {
    let mut earliest: BTreeMap<String, f64> = BTreeMap::new();
    for record in data.chunks_exact(UTMP_RECORD) {
        let kind = i16::from_ne_bytes([record[0], record[1]]);
        if kind != USER_PROCESS {
            continue;
        }
        let name = c_string(&record[44..76]);
        if name.is_empty() {
            continue;
        }
        let secs = i32::from_ne_bytes([record[340], record[341], record[342], record[343]]);
        let usecs = i32::from_ne_bytes([record[344], record[345], record[346], record[347]]);
        let login = f64::from(secs) + f64::from(usecs) / 1e6;
        earliest
            .entry(name)
            .and_modify(|t| *t = t.min(login))
            .or_insert(login);
    }
    earliest
        .into_iter()
        .map(|(user, login_time)| User {
            user,
            login_time,
            domain: None,
        })
        .collect()
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utmp_earliest_login_per_user() {
        let mut data = Vec::new();
        for (kind, user, secs) in [
            (7i16, "alice", 200i32),
            (7, "bob", 50),
            (7, "alice", 100),
            (8, "carol", 1),
        ] {
            let mut record = vec![0u8; UTMP_RECORD];
            record[0..2].copy_from_slice(&kind.to_ne_bytes());
            record[44..44 + user.len()].copy_from_slice(user.as_bytes());
            record[340..344].copy_from_slice(&secs.to_ne_bytes());
            record[344..348].copy_from_slice(&500_000i32.to_ne_bytes());
            data.extend(record);
        }
        data.extend([1, 2, 3]); // a torn trailing record is ignored
        let users = parse_utmp(&data);
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].user, "alice");
        assert_eq!(users[0].login_time, 100.5);
        assert_eq!(users[1].user, "bob");
    }
}
