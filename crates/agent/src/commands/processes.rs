//! guest-porthole-processes (from /proc), guest-porthole-services and
//! guest-porthole-service-status (systemd units, through systemctl).
//!
//! Processes are listed in pid order, at most `max` of them (bounded whatever is asked), each
//! file read with a size cap; a process that exits while being read is skipped. Services need
//! a running systemd (`/run/systemd/system` exists, sd_booted(3)'s test); otherwise the error
//! starts with `systemd is not running`.

use super::sysfs::read_text;
use super::{blocking, errno_text, NoArgs};
use crate::agent::Agent;
use porthole_proto::commands::{PxProcessesArgs, PxServiceArgs};
use porthole_proto::CommandError;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

/// `max` when absent, and its ceiling.
pub const DEFAULT_MAX: usize = 4096;
pub const MAX_PROCESSES: usize = 65536;
/// Bytes of a command line kept.
const CMDLINE_LIMIT: u64 = 4096;
/// Bytes of systemctl output read.
const SYSTEMCTL_LIMIT: usize = 16 << 20;

/// The fields of /proc/PID/stat this listing uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub state: String,
    pub ppid: i64,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set, in pages.
    pub rss_pages: u64,
}

/// Parses /proc/PID/stat. The command name may hold spaces and parentheses, so the fields are
/// counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(Stat {
        comm,
        state: fields.first()?.to_string(),
        ppid: fields.get(1)?.parse().ok()?,
        cpu_ticks: num(11)?.saturating_add(num(12)?),
        rss_pages: num(21)?,
    })
}

fn sysconf(name: libc::c_int, fallback: u64) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let value = unsafe { libc::sysconf(name) };
    u64::try_from(value)
        .ok()
        .filter(|v| *v > 0)
        .unwrap_or(fallback)
}

pub async fn processes(_agent: Arc<Agent>, args: PxProcessesArgs) -> Result<Value, CommandError> {
    let max = match args.max {
        None => DEFAULT_MAX,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_PROCESSES).contains(n))
            .ok_or_else(|| CommandError::invalid_value(n, "max"))?,
    };
    blocking(move || {
        let dir = std::fs::read_dir("/proc")
            .map_err(|e| CommandError::failed(format!("/proc: {}", errno_text(&e))))?;
        let mut pids: Vec<u32> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .take(MAX_PROCESSES)
            .collect();
        pids.sort_unstable();
        let truncated = pids.len() > max;
        pids.truncate(max);
        let (page, ticks) = (
            sysconf(libc::_SC_PAGESIZE, 4096),
            sysconf(libc::_SC_CLK_TCK, 100),
        );
        let mut users = HashMap::new();
        let list: Vec<Value> = pids
            .into_iter()
            .filter_map(|pid| process(pid, page, ticks, &mut users))
            .collect();
        Ok(json!({ "processes": list, "truncated": truncated }))
    })
    .await
}

fn process(pid: u32, page: u64, ticks: u64, users: &mut HashMap<u32, String>) -> Option<Value> {
    let base = format!("/proc/{pid}");
    let stat = parse_stat(&read_text(Path::new(&format!("{base}/stat")), 4096).ok()?)?;
    // The directory belongs to the process's effective uid.
    let uid = std::fs::metadata(&base).ok()?.uid();
    let user = users
        .entry(uid)
        .or_insert_with(|| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map_or_else(|| uid.to_string(), |u| u.name)
        })
        .clone();
    let cmdline = read_text(Path::new(&format!("{base}/cmdline")), CMDLINE_LIMIT)
        .unwrap_or_default()
        .trim_end_matches('\0')
        .replace('\0', " ");
    Some(json!({
        "pid": pid,
        "ppid": stat.ppid,
        "uid": uid,
        "user": user,
        "state": stat.state,
        "name": stat.comm,
        "rss-bytes": stat.rss_pages.saturating_mul(page),
        "cpu-time-ms": stat.cpu_ticks.saturating_mul(1000) / ticks,
        "command-line": cmdline,
    }))
}

/// Refuses when systemd is not the running init.
fn require_systemd() -> Result<(), CommandError> {
    if Path::new("/run/systemd/system").is_dir() {
        return Ok(());
    }
    let init = read_text(Path::new("/proc/1/comm"), 256).unwrap_or_default();
    Err(CommandError::failed(format!(
        "systemd is not running (PID 1 is '{}'); services can only be listed under systemd",
        init.trim()
    )))
}

/// How long systemctl and the time services may take (a stuck D-Bus, an unreachable NTP server).
pub const HELPER_DEADLINE: Duration = Duration::from_secs(30);

/// Runs a helper program to completion within `deadline` (killed past it), stdin on
/// /dev/null. Errors are one line: what ran and why it failed.
pub async fn run_helper(
    program: &str,
    args: &[&str],
    deadline: Duration,
) -> Result<std::process::Output, String> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env("SYSTEMD_PAGER", "")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(deadline, command.output()).await {
        Err(_) => {
            return Err(format!(
                "{program} {} did not finish within {} s",
                args.join(" "),
                deadline.as_secs()
            ))
        }
        Ok(Err(e)) => return Err(format!("cannot run {program}: {}", errno_text(&e))),
        Ok(Ok(output)) => output,
    };
    if output.status.success() {
        return Ok(output);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first: String = stderr
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    Err(format!(
        "{program} {} failed ({}): {first}",
        args.join(" "),
        output.status
    ))
}

/// Runs systemctl with `args`, returning its standard output (at most 16 MiB kept).
async fn systemctl(args: &[&str]) -> Result<String, CommandError> {
    let output = run_helper("systemctl", args, HELPER_DEADLINE)
        .await
        .map_err(CommandError::failed)?;
    let stdout = output
        .stdout
        .get(..SYSTEMCTL_LIMIT)
        .unwrap_or(&output.stdout);
    Ok(String::from_utf8_lossy(stdout).into_owned())
}

pub async fn services(_agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    require_systemd()?;
    let text = systemctl(&["list-units", "--all", "--output=json", "--no-pager"]).await?;
    let units: Value = serde_json::from_str(&text)
        .map_err(|e| CommandError::failed(format!("systemctl's JSON: {e}")))?;
    Ok(json!({ "units": units }))
}

/// Properties reported by guest-porthole-service-status.
const PROPERTIES: &str = "Id,Description,LoadState,ActiveState,SubState,UnitFileState,MainPID,ExecMainStatus,ActiveEnterTimestamp";

pub async fn service_status(
    _agent: Arc<Agent>,
    args: PxServiceArgs,
) -> Result<Value, CommandError> {
    // A unit name never starts with '-' (it would be an option) nor holds control characters.
    if args.name.is_empty() || args.name.starts_with('-') || args.name.chars().any(char::is_control)
    {
        return Err(CommandError::invalid_value(&args.name, "name"));
    }
    require_systemd()?;
    let text = systemctl(&["show", "--no-pager", "-p", PROPERTIES, "--", &args.name]).await?;
    let props: serde_json::Map<String, Value> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    if props.get("LoadState").and_then(Value::as_str) == Some("not-found") {
        return Err(CommandError::not_found(format!(
            "unit '{}' not found",
            args.name
        )));
    }
    Ok(Value::Object(props))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_names() {
        let text = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 100 1000 250 18446744073709551615";
        let stat = parse_stat(text);
        assert_eq!(
            stat,
            Some(Stat {
                comm: "a) b (c)".into(),
                state: "S".into(),
                ppid: 1,
                cpu_ticks: 10,
                rss_pages: 250,
            })
        );
        assert_eq!(parse_stat("42 (x) S"), None);
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat(")("), None);
    }
}
