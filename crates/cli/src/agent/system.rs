//! The clock, CPUs, load, and porthole-agent's telemetry, process and service lists.

use super::{explain_missing, print_json, Session};
use crate::cli::TimeAction;
use crate::output::{human_bytes, human_duration, key_values, table, utc_from_nanos, yes_no};
use anyhow::{Context, Result};
use porthole_client::commands::{self as cmd, LoadAverage, LogicalProcessor};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

impl Session {
    pub(super) fn time(&mut self, action: Option<TimeAction>) -> Result<()> {
        match action.unwrap_or(TimeAction::Get) {
            TimeAction::Get => self.show(cmd::GUEST_GET_TIME.name, |nanos: i64| {
                format!("{}\n", utc_from_nanos(nanos))
            }),
            TimeAction::Set { ns, now } => {
                let nanos = match (ns, now) {
                    (Some(n), _) => n,
                    (None, _) => host_nanos()?,
                };
                self.query_with(cmd::GUEST_SET_TIME.name, json!({ "time": nanos }))?;
                self.report(json!({ "time": nanos }), || {
                    format!("guest clock set to {}\n", utc_from_nanos(nanos))
                })
            }
            TimeAction::Sync { now } => {
                let time_ns = if now { Some(host_nanos()?) } else { None };
                let command = cmd::GUEST_PORTHOLE_TIME_SYNC.name;
                if now && !self.supports(command)? {
                    // qemu-ga: guest-set-time does the same with the host's time.
                    return self.time(Some(TimeAction::Set { ns: time_ns, now }));
                }
                let method = self
                    .client
                    .px_time_sync(time_ns)
                    .map_err(|e| explain_missing(e, command))?;
                self.report(json!({ "method": method }), || {
                    format!("guest clock synchronised ({method})\n")
                })
            }
        }
    }

    /// Prints `value` with `--json`, else the human text.
    pub(super) fn report(&self, value: Value, human: impl FnOnce() -> String) -> Result<()> {
        if self.json {
            print_json(&value)
        } else {
            crate::output::emit(&human()).context("cannot write to standard output")
        }
    }

    pub(super) fn vcpus(&mut self) -> Result<()> {
        self.show(cmd::GUEST_GET_VCPUS.name, |cpus: Vec<LogicalProcessor>| {
            let rows: Vec<Vec<String>> = cpus
                .into_iter()
                .map(|c| {
                    vec![
                        c.logical_id.to_string(),
                        yes_no(c.online).into(),
                        c.can_offline.map(yes_no).unwrap_or("-").into(),
                    ]
                })
                .collect();
            table(&["CPU", "ONLINE", "CAN-OFFLINE"], &rows)
        })
    }

    pub(super) fn load(&mut self) -> Result<()> {
        self.show(cmd::GUEST_GET_LOAD.name, |load: LoadAverage| {
            format!(
                "load average: {:.2}, {:.2}, {:.2}\n",
                load.load1m, load.load5m, load.load15m
            )
        })
    }

    pub(super) fn telemetry(&mut self) -> Result<()> {
        self.show(cmd::GUEST_PORTHOLE_TELEMETRY.name, |t: Value| {
            telemetry_text(&t)
        })
    }

    pub(super) fn ps(&mut self, max: Option<i64>) -> Result<()> {
        let arguments = max.map_or(Value::Null, |n| json!({ "max": n }));
        self.show_with(cmd::GUEST_PORTHOLE_PROCESSES.name, arguments, |v: Value| {
            let rows: Vec<Vec<String>> = list(&v["processes"])
                .iter()
                .map(|p| {
                    let command = match text(&p["command-line"]) {
                        c if c.is_empty() => format!("[{}]", text(&p["name"])),
                        c => c,
                    };
                    vec![
                        text(&p["pid"]),
                        text(&p["ppid"]),
                        text(&p["user"]),
                        text(&p["state"]),
                        bytes(&p["rss-bytes"]),
                        millis(&p["cpu-time-ms"]),
                        command,
                    ]
                })
                .collect();
            let mut out = table(
                &["PID", "PPID", "USER", "S", "RSS", "CPU-TIME", "COMMAND"],
                &rows,
            );
            if v["truncated"].as_bool() == Some(true) {
                out.push_str("(list truncated; ask for more with --max)\n");
            }
            out
        })
    }

    pub(super) fn services(&mut self) -> Result<()> {
        self.show(cmd::GUEST_PORTHOLE_SERVICES.name, |v: Value| {
            let rows: Vec<Vec<String>> = list(&v["units"])
                .iter()
                .map(|u| {
                    ["unit", "load", "active", "sub", "description"]
                        .iter()
                        .map(|k| text(&u[*k]))
                        .collect()
                })
                .collect();
            table(&["UNIT", "LOAD", "ACTIVE", "SUB", "DESCRIPTION"], &rows)
        })
    }
}

/// The host's clock in nanoseconds since the epoch.
fn host_nanos() -> Result<i64> {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the host clock is before 1970")?;
    i64::try_from(since.as_nanos()).context("the host clock is past 2262")
}

fn telemetry_text(t: &Value) -> String {
    let cpu = &t["cpu"];
    let mem = &t["memory"];
    let swap = &t["swap"];
    let load = &t["load"];
    let mut out = key_values(&[
        ("cpus", Some(text(&cpu["count"]))),
        (
            "memory",
            Some(format!(
                "{} total, {} available, {} used",
                bytes(&mem["total-bytes"]),
                bytes(&mem["available-bytes"]),
                bytes(&mem["used-bytes"])
            )),
        ),
        (
            "swap",
            Some(format!(
                "{} total, {} free, {} used",
                bytes(&swap["total-bytes"]),
                bytes(&swap["free-bytes"]),
                bytes(&swap["used-bytes"])
            )),
        ),
        (
            "load",
            Some(format!(
                "{} {} {}",
                text(&load["1m"]),
                text(&load["5m"]),
                text(&load["15m"])
            )),
        ),
        (
            "uptime",
            t["uptime-seconds"]
                .as_f64()
                .map(|s| human_duration(s.max(0.0) as u64)),
        ),
    ]);
    let filesystems: Vec<Vec<String>> = list(&t["filesystems"])
        .iter()
        .map(|f| {
            let mut row: Vec<String> = ["mountpoint", "type", "device"]
                .iter()
                .map(|k| text(&f[*k]))
                .collect();
            row.extend(
                ["total-bytes", "used-bytes", "available-bytes"]
                    .iter()
                    .map(|k| bytes(&f[*k])),
            );
            row
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &["MOUNTPOINT", "TYPE", "DEVICE", "SIZE", "USED", "AVAIL"],
        &filesystems,
    ));
    let interfaces: Vec<Vec<String>> = list(&t["interfaces"])
        .iter()
        .map(|i| {
            vec![
                text(&i["name"]),
                bytes(&i["rx-bytes"]),
                text(&i["rx-packets"]),
                bytes(&i["tx-bytes"]),
                text(&i["tx-packets"]),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &["INTERFACE", "RX", "RX-PACKETS", "TX", "TX-PACKETS"],
        &interfaces,
    ));
    out
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A member as plain text: strings unquoted, absent as `-`.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn bytes(value: &Value) -> String {
    value
        .as_u64()
        .map(human_bytes)
        .unwrap_or_else(|| text(value))
}

fn millis(value: &Value) -> String {
    value
        .as_u64()
        .map(|ms| human_duration(ms / 1000))
        .unwrap_or_else(|| text(value))
}
