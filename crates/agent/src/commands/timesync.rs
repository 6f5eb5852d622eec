//! guest-porthole-time-sync: bring the clock back after a resume or migration.
//!
//! With `time-ns` the clock is stepped to it and the RTC set, exactly as guest-set-time does
//! (its code runs). Without, the guest's own time service is asked, first that is present:
//! chrony (`chronyc makestep`), systemd-timesyncd (restarted, which makes it step), ntpd
//! (`ntpd -gq`, one step then exit). The reply names the method that ran.

use super::{blocking, errno_text};
use crate::agent::Agent;
use porthole_proto::commands::{PxTimeSyncArgs, SetTimeArgs};
use porthole_proto::CommandError;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

pub async fn time_sync(agent: Arc<Agent>, args: PxTimeSyncArgs) -> Result<Value, CommandError> {
    if let Some(time) = args.time_ns {
        super::system::set_time(agent, SetTimeArgs { time: Some(time) }).await?;
        return Ok(json!({ "method": "clock_settime" }));
    }
    blocking(|| {
        let mut tried = Vec::new();
        for (method, available, program, args) in methods() {
            if !available {
                continue;
            }
            match run(program, args) {
                Ok(()) => return Ok(json!({ "method": method })),
                Err(why) => tried.push(format!("{method}: {why}")),
            }
        }
        Err(CommandError::failed(if tried.is_empty() {
            "no time service found (chrony, systemd-timesyncd, ntpd)".to_string()
        } else {
            format!("every time service failed: {}", tried.join("; "))
        }))
    })
    .await
}

type Method = (&'static str, bool, &'static str, &'static [&'static str]);

fn methods() -> [Method; 3] {
    let systemd = Path::new("/run/systemd/system").is_dir();
    let timesyncd = [
        "/lib/systemd/systemd-timesyncd",
        "/usr/lib/systemd/systemd-timesyncd",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    [
        ("chrony", in_path("chronyc"), "chronyc", &["makestep"]),
        (
            "systemd-timesyncd",
            systemd && timesyncd,
            "systemctl",
            &["restart", "systemd-timesyncd.service"],
        ),
        ("ntpd", in_path("ntpd"), "ntpd", &["-gq"]),
    ]
}

fn in_path(program: &str) -> bool {
    crate::policy::exec::resolve_program(program, None).is_some()
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {}", errno_text(&e)))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first = stderr
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect::<String>();
    Err(format!(
        "{program} {} exited {}: {first}",
        args.join(" "),
        output.status
    ))
}
