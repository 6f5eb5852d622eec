//! guest-porthole-time-sync: bring the clock back after a resume or migration.
//!
//! With `time-ns` the clock is stepped to it and the RTC set, exactly as guest-set-time does
//! (its code runs). Without, the guest's own time service is asked, first that is present:
//! chrony (`chronyc makestep`), systemd-timesyncd (restarted, which makes it step), ntpd
//! (`ntpd -gq`, one step then exit). The reply names the method that ran; each helper gets
//! 30 s.

use super::blocking;
use super::processes::{run_helper, HELPER_DEADLINE};
use crate::agent::Agent;
use porthole_proto::commands::{PxTimeSyncArgs, SetTimeArgs};
use porthole_proto::CommandError;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

pub async fn time_sync(agent: Arc<Agent>, args: PxTimeSyncArgs) -> Result<Value, CommandError> {
    if let Some(time) = args.time_ns {
        super::system::set_time(agent, SetTimeArgs { time: Some(time) }).await?;
        return Ok(json!({ "method": "clock_settime" }));
    }
    let mut tried = Vec::new();
    for (method, available, program, args) in blocking(|| Ok(methods())).await? {
        if !available {
            continue;
        }
        match run_helper(program, args, HELPER_DEADLINE).await {
            Ok(_) => return Ok(json!({ "method": method })),
            Err(why) => tried.push(format!("{method}: {why}")),
        }
    }
    Err(CommandError::failed(if tried.is_empty() {
        "no time service found (chrony, systemd-timesyncd, ntpd)".to_string()
    } else {
        format!("every time service failed: {}", tried.join("; "))
    }))
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
