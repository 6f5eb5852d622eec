//! The read-only command groups over both transports into the guest (virtio-serial and hybrid
//! vsock): the same agent must give the same answers whichever way the host comes in. Values
//! that move on their own between two calls (clocks, packet and CPU counters) are compared
//! within a tolerance or left out; everything else must be equal.

use super::{err, hybrid_endpoint, options, Outcome, Suite};
use porthole_client::Client;
use porthole_vmtest::AGENT_VSOCK_PORT;
use serde_json::{json, Value};
use std::time::Duration;

/// Each group's read-only commands.
const GROUPS: &[(&str, &[&str])] = &[
    ("info", &["guest-info"]),
    (
        "os",
        &[
            "guest-get-osinfo",
            "guest-get-host-name",
            "guest-get-timezone",
        ],
    ),
    (
        "fsinfo",
        &["guest-get-fsinfo", "guest-get-disks", "guest-get-vcpus"],
    ),
    ("network", &["guest-network-get-interfaces"]),
    ("time", &["guest-get-time"]),
    ("users", &["guest-get-users"]),
    ("telemetry", &["guest-porthole-telemetry"]),
];

/// Seconds two guest-get-time answers may differ by (the calls run one after the other).
const CLOCK_SLACK_NS: i64 = 30_000_000_000;

fn ask(client: &mut Client, command: &str) -> Result<Value, String> {
    client
        .call(command, Value::Null, Duration::from_secs(60))
        .map_err(err)
}

/// The part of an answer that does not change by itself between two calls.
fn stable(command: &str, value: Value) -> Value {
    match command {
        "guest-network-get-interfaces" => strip(value, "statistics"),
        "guest-porthole-telemetry" => json!({
            "cpu-count": value["cpu"]["count"],
            "memory-total": value["memory"]["total-bytes"],
            "swap-total": value["swap"]["total-bytes"],
            "filesystems": value["filesystems"].as_array().map(|all| all.iter().map(|f| json!([
                f["mountpoint"], f["type"], f["device"], f["total-bytes"]
            ])).collect::<Vec<_>>()),
            "interfaces": value["interfaces"].as_array().map(|all| all.iter().map(|i| i["name"].clone()).collect::<Vec<_>>()),
        }),
        _ => value,
    }
}

/// `value` without any member named `key`, at any depth.
fn strip(value: Value, key: &str) -> Value {
    match value {
        Value::Object(members) => Value::Object(
            members
                .into_iter()
                .filter(|(k, _)| k != key)
                .map(|(k, v)| (k, strip(v, key)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| strip(v, key)).collect()),
        other => other,
    }
}

pub fn every_group_over_both_transports(suite: &mut Suite) -> Outcome {
    let mut serial = suite.client()?;
    let endpoint = hybrid_endpoint(suite, AGENT_VSOCK_PORT)?;
    let mut vsock = Client::connect(&endpoint, options()).map_err(err)?;
    let mut differences = Vec::new();
    for (group, commands) in GROUPS {
        for command in *commands {
            let a = ask(&mut serial, command)
                .map_err(|e| format!("{group}/{command} over virtio-serial: {e}"))?;
            let b = ask(&mut vsock, command)
                .map_err(|e| format!("{group}/{command} over hybrid vsock: {e}"))?;
            if *command == "guest-get-time" {
                let gap = a.as_i64().zip(b.as_i64()).map(|(a, b)| (a - b).abs());
                if gap.is_none_or(|gap| gap >= CLOCK_SLACK_NS) {
                    differences.push(format!("{group}/{command}: {a} vs {b}"));
                }
                continue;
            }
            let (a, b) = (stable(command, a), stable(command, b));
            if a != b {
                differences.push(format!(
                    "{group}/{command}:\n  virtio-serial {a}\n  hybrid vsock  {b}"
                ));
            } else if *command != "guest-get-users"
                && (a.is_null() || a == json!({}) || a == json!([]))
            {
                // (No one is logged in to the initramfs: an empty user list is right.)
                differences.push(format!("{group}/{command}: empty answer {a} on both"));
            }
        }
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(differences.join("\n"))
    }
}
