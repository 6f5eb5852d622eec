//! porthole-agent behaviour that qemu-ga 7.2 cannot be compared against: commands it lacks
//! (checked against the schema in reference §1), qemu 8.0 features (`-a`, capture-output
//! modes), and deliberate improvements (concurrent clients, per-connection parser reset,
//! silent 0xFF resync).

mod common;

use std::time::Duration;

use porthole_conformance::client::REPLY_TIMEOUT;
use porthole_conformance::{connect, error_of, Agent, AgentKind, AgentOpts};
use serde_json::{json, Value};

fn porthole(opts: &AgentOpts) -> Agent {
    Agent::start_with(AgentKind::Porthole, opts).unwrap_or_else(|e| panic!("porthole-agent: {e}"))
}

fn is_num(v: &Value) -> bool {
    v.is_number()
}

/// Several clients at once, each interleaving syncs: every reply goes to its own client.
/// (qemu-ga serves one client at a time; porthole serves them concurrently.)
#[test]
fn concurrent_clients_are_served() {
    let agent = porthole(&AgentOpts::default());
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let agent = &agent;
            s.spawn(move || {
                let mut c = connect(agent);
                for i in 0..50u64 {
                    let id = t * 1000 + i;
                    let r = c
                        .request(&json!({"execute":"guest-sync","arguments":{"id": id}}))
                        .expect("reply");
                    assert_eq!(r, json!({"return": id}), "client {t}");
                }
            });
        }
    });
}

/// A client that vanished mid-request leaves nothing behind: the next client's first plain
/// request is answered (qemu-ga would swallow it into the stale half request).
#[test]
fn new_connection_starts_with_a_fresh_parser() {
    let agent = porthole(&AgentOpts::default());
    let mut c = connect(&agent);
    c.send(br#"{"execute":"guest-sync","arguments":{"id":"#)
        .expect("send");
    drop(c);
    let mut c2 = connect(&agent);
    let r = c2
        .request(&json!({"execute":"guest-sync","arguments":{"id":77}}))
        .expect("first request of the new client");
    assert_eq!(r, json!({"return": 77}));
}

/// 0xFF resets the parser silently: no "stray" error reply (qemu-ga 7.2 sends one).
#[test]
fn lone_0xff_resets_silently() {
    let agent = porthole(&AgentOpts::default());
    let mut c = connect(&agent);
    c.send(b"\xff").expect("send");
    c.send(b"{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":5}}")
        .expect("send");
    let r = c.read_reply(REPLY_TIMEOUT).expect("reply");
    assert!(r.delimited, "reply not 0xFF-prefixed: {r:?}");
    assert_eq!(r.value, json!({"return": 5}), "first reply after 0xFF");
}

/// `-a LIST` (qemu-ga 8.0+): only the listed commands are enabled; others answer like blocked
/// ones ("Command X has been disabled") and guest-info shows enabled:false.
#[test]
fn allow_list_enables_only_listed_commands() {
    let agent = porthole(&AgentOpts::default().args(["-a", "guest-ping,guest-info,guest-sync"]));
    let mut c = connect(&agent);
    assert_eq!(c.ok("guest-ping", Value::Null), json!({}));
    let r = c
        .execute("guest-exec", json!({"path": "/bin/true"}))
        .expect("reply");
    assert_eq!(
        error_of(&r),
        Some((
            "CommandNotFound".into(),
            "Command guest-exec has been disabled".into()
        ))
    );
    let info = c.ok("guest-info", Value::Null);
    let enabled = |n: &str| {
        info["supported_commands"]
            .as_array()
            .and_then(|l| l.iter().find(|e| e["name"] == n))
            .map(|e| e["enabled"].clone())
    };
    assert_eq!(enabled("guest-exec"), Some(json!(false)));
    assert_eq!(enabled("guest-file-open"), Some(json!(false)));
    assert_eq!(enabled("guest-ping"), Some(json!(true)));
    assert_eq!(enabled("guest-sync"), Some(json!(true)));
}

/// guest-get-load (qemu 9.1): `{load1m, load5m, load15m}` numbers matching /proc/loadavg.
#[test]
fn get_load_shape() {
    let agent = porthole(&AgentOpts::default());
    let r = connect(&agent).ok("guest-get-load", Value::Null);
    let keys: Vec<_> = r.as_object().expect("object").keys().cloned().collect();
    assert_eq!(keys.len(), 3, "{r}");
    for k in ["load1m", "load5m", "load15m"] {
        assert!(is_num(&r[k]), "{k} in {r}");
        assert!(r[k].as_f64().is_some_and(|x| x >= 0.0), "{k} in {r}");
    }
}

/// guest-network-get-route (qemu 9.1, Linux): array of routes with iface, destination,
/// metric, version; the default route of this machine is present.
#[test]
fn network_get_route_shape() {
    let agent = porthole(&AgentOpts::default());
    let r = connect(&agent).ok("guest-network-get-route", Value::Null);
    let routes = r.as_array().expect("array of routes");
    let proc_has_routes = std::fs::read_to_string("/proc/net/route")
        .map(|t| t.lines().count() > 1)
        .unwrap_or(false);
    assert_eq!(
        !routes.is_empty(),
        proc_has_routes || !routes.is_empty(),
        "{r}"
    );
    if proc_has_routes {
        assert!(
            routes.iter().any(|x| x["version"] == 4),
            "no IPv4 route: {r}"
        );
    }
    for route in routes {
        assert!(route["iface"].is_string(), "{route}");
        assert!(route["destination"].is_string(), "{route}");
        assert!(is_num(&route["metric"]), "{route}");
        assert!(route["version"] == 4 || route["version"] == 6, "{route}");
    }
}

/// capture-output as an enum (qemu 8.0): none / stdout / stderr / separated / merged.
#[test]
fn exec_capture_output_modes() {
    let agent = porthole(&AgentOpts::default());
    let script = json!(["-c", "printf out; printf err >&2"]);
    let run = |mode: &str| -> Value {
        let (_, st) = common::exec_and_wait(
            &agent,
            json!({"path": "/bin/sh", "arg": script, "capture-output": mode}),
        );
        st.expect("started")["return"].clone()
    };
    let none = run("none");
    assert!(
        none.get("out-data").is_none() && none.get("err-data").is_none(),
        "{none}"
    );
    let out = run("stdout");
    assert_eq!(out["out-data"], "b3V0", "{out}"); // "out"
    assert!(out.get("err-data").is_none(), "{out}");
    let err = run("stderr");
    assert_eq!(err["err-data"], "ZXJy", "{err}"); // "err"
    assert!(err.get("out-data").is_none(), "{err}");
    let sep = run("separated");
    assert_eq!(
        (sep["out-data"].clone(), sep["err-data"].clone()),
        (json!("b3V0"), json!("ZXJy"))
    );
    let merged = run("merged");
    assert_eq!(merged["out-data"], "b3V0ZXJy", "{merged}"); // "outerr"
    assert!(merged.get("err-data").is_none(), "{merged}");
    let bad = common::exec_and_wait(
        &agent,
        json!({"path": "/bin/true", "capture-output": "bogus"}),
    )
    .0;
    assert_eq!(
        error_of(&bad).map(|e| e.0),
        Some("GenericError".into()),
        "{bad}"
    );
}

/// A slow client that reads nothing while a large exec output is produced still gets the
/// full 16 MiB-capped output afterwards, with out-truncated set above the cap.
#[test]
fn exec_output_cap_is_16_mib() {
    let agent = porthole(&AgentOpts::default());
    let (_, st) = common::exec_and_wait(
        &agent,
        json!({"path": "/bin/sh", "arg": ["-c", "head -c 17000000 /dev/zero"], "capture-output": true}),
    );
    let st = st.expect("started")["return"].clone();
    assert_eq!(st["out-truncated"], true, "out-truncated missing");
    let len = st["out-data"].as_str().map_or(0, str::len);
    assert_eq!(
        len,
        (16 * 1024 * 1024usize).div_ceil(3) * 4,
        "base64 length of 16 MiB"
    );
}

/// Commands that never reply on success are not exercised (guest-shutdown would power off this
/// machine); blocking one still yields the standard disabled error.
#[test]
fn blocked_shutdown_is_disabled() {
    let agent = porthole(&AgentOpts::default().args(["-b", "guest-shutdown,guest-suspend-ram"]));
    let mut c = connect(&agent);
    let r = c.execute("guest-shutdown", Value::Null).expect("reply");
    assert_eq!(
        error_of(&r),
        Some((
            "CommandNotFound".into(),
            "Command guest-shutdown has been disabled".into()
        ))
    );
    assert!(c.expect_silence(Duration::from_millis(50)).is_ok());
}
