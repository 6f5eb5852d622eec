//! Differential tests of the freeze, trim, suspend, password and ssh-key commands against
//! qemu-ga 7.2: argument validation, error classes and texts, and what they do to throwaway
//! users.
//!
//! Safety on a shared machine: nothing here freezes, thaws or trims a real filesystem, changes
//! a real account or suspends the machine. The frozen state is entered through each agent's
//! marker file (qemu-ga's `qga.state.isfrozen`, porthole's `porthole-agent.frozen`) and never
//! left through a thaw; freeze-list only names a mount point that does not exist, after a hook
//! that fails; suspend is tried only in hybrid mode with an empty PATH (no helper, and
//! /sys/power/state has no hybrid word); users are made with useradd and removed.

mod common;

use base64::Engine as _;
use common::*;
use porthole_conformance::{
    connect, error_of, exchange, Agent, AgentKind, AgentOpts, Pair, ShapeOpts,
};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn b64(data: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

const NO_SUCH_MOUNT: &str = "/nonexistent-porthole-mount";

/// Requests whose replies (errors and harmless successes) must be byte-for-byte qemu-ga's.
const VALIDATION: &[&str] = &[
    r#"{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":"x"}}"#,
    r#"{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":[1]}}"#,
    r#"{"execute":"guest-fsfreeze-freeze-list","arguments":{"bogus":[]}}"#,
    r#"{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":["/nonexistent-porthole-mount"]}}"#,
    r#"{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":[]}}"#,
    r#"{"execute":"guest-fsfreeze-status"}"#,
    r#"{"execute":"guest-fsfreeze-freeze","arguments":{"mountpoints":[]}}"#,
    r#"{"execute":"guest-fsfreeze-thaw","arguments":{"x":1}}"#,
    r#"{"execute":"guest-fstrim","arguments":{"minimum":"x"}}"#,
    r#"{"execute":"guest-fstrim","arguments":{"minimum":1.5}}"#,
    r#"{"execute":"guest-fstrim","arguments":{"bogus":1}}"#,
    r#"{"execute":"guest-suspend-ram","arguments":{"bogus":1}}"#,
    r#"{"execute":"guest-suspend-disk","arguments":{"bogus":1}}"#,
    r#"{"execute":"guest-suspend-hybrid","arguments":{"bogus":1}}"#,
    r#"{"execute":"guest-set-user-password","arguments":{"username":"x","password":"YWJj"}}"#,
    r#"{"execute":"guest-set-user-password","arguments":{"username":1,"password":"YWJj","crypted":false}}"#,
    r#"{"execute":"guest-set-user-password","arguments":{"username":"x","password":"YWJj","crypted":"yes"}}"#,
    r#"{"execute":"guest-set-user-password","arguments":{"username":"x","password":"!!!","crypted":false}}"#,
    r#"{"execute":"guest-set-user-password","arguments":{"username":"a:b","password":"YWJj","crypted":false}}"#,
    r#"{"execute":"guest-set-user-password","arguments":{"username":"a\nb","password":"YWJj","crypted":false}}"#,
    r#"{"execute":"guest-set-user-password","arguments":{"username":"a:b","password":"YQpi","crypted":true}}"#,
    r#"{"execute":"guest-ssh-get-authorized-keys","arguments":{}}"#,
    r#"{"execute":"guest-ssh-get-authorized-keys","arguments":{"username":"nosuchuser-porthole"}}"#,
    r#"{"execute":"guest-ssh-get-authorized-keys","arguments":{"username":""}}"#,
    r#"{"execute":"guest-ssh-add-authorized-keys","arguments":{"username":"root"}}"#,
    r#"{"execute":"guest-ssh-add-authorized-keys","arguments":{"username":"root","keys":"x"}}"#,
    r#"{"execute":"guest-ssh-add-authorized-keys","arguments":{"username":"root","keys":["x"],"reset":"yes"}}"#,
    r##"{"execute":"guest-ssh-add-authorized-keys","arguments":{"username":"root","keys":["#c"]}}"##,
    r#"{"execute":"guest-ssh-add-authorized-keys","arguments":{"username":"root","keys":["ok","a\nb"]}}"#,
    r#"{"execute":"guest-ssh-add-authorized-keys","arguments":{"username":"nosuchuser-porthole","keys":["ssh-rsa A"]}}"#,
    r#"{"execute":"guest-ssh-remove-authorized-keys","arguments":{"username":"nosuchuser-porthole","keys":["x"]}}"#,
    r##"{"execute":"guest-ssh-remove-authorized-keys","arguments":{"username":"root","keys":["#x"]}}"##,
    r#"{"execute":"guest-ssh-remove-authorized-keys","arguments":{"username":"root"}}"#,
];

#[test]
fn validation_and_error_texts_agree() {
    let pair = Pair::new();
    let (q, p) = pair.each(|a| {
        let mut c = connect(a);
        VALIDATION
            .iter()
            .map(|i| exchange(&mut c, i.as_bytes()))
            .collect::<Vec<_>>()
    });
    let mut d = Divergences::default();
    for ((input, qr), pr) in VALIDATION.iter().zip(&q).zip(&p) {
        assert_eq!(qr.len(), 1, "qemu-ga: {input} -> {qr:?}");
        d.same(input, &json!(qr), &json!(pr), &ShapeOpts::exact());
    }
    d.finish();
    assert_eq!(
        q[3],
        vec![json!({"return": 0})],
        "freeze-list of no mount point"
    );
}

/// A hook that is missing or fails aborts the freeze before any filesystem is touched.
#[test]
fn hook_failures_agree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let failing = dir.path().join("failing-hook");
    std::fs::write(&failing, "#!/bin/sh\nexit 3\n").expect("hook");
    std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let missing = dir.path().join("missing-hook");
    let req = json!({"execute": "guest-fsfreeze-freeze-list",
                     "arguments": {"mountpoints": [NO_SUCH_MOUNT]}});
    for hook in [&failing, &missing] {
        let opts = AgentOpts::default().args([format!("--fsfreeze-hook={}", hook.display())]);
        let pair = Pair::start(&opts);
        let (q, p) = pair.each(|a| {
            let mut c = connect(a);
            let freeze = c.request(&req).expect("reply");
            (freeze, c.ok("guest-fsfreeze-status", Value::Null))
        });
        assert!(error_of(&q.0).is_some(), "qemu-ga: {}", q.0);
        assert_same_error(&format!("hook {}", hook.display()), &q.0, &p.0);
        assert_eq!((&q.1, &p.1), (&json!("thawed"), &json!("thawed")));
    }
}

/// With no helper on PATH, hybrid sleep is unsupported everywhere (/sys/power/state has no
/// word for it), so neither agent can suspend the machine.
#[test]
fn suspend_unsupported_agrees() {
    let empty = tempfile::tempdir().expect("tempdir");
    let opts = AgentOpts::default().env("PATH", &empty.path().to_string_lossy());
    let pair = Pair::start(&opts);
    let (q, p) = pair.each(|a| {
        connect(a)
            .execute("guest-suspend-hybrid", Value::Null)
            .expect("reply")
    });
    assert_eq!(
        error_of(&q),
        Some((
            "GenericError".into(),
            "the requested suspend mode is not supported by the guest".into()
        ))
    );
    assert_same_error("suspend-hybrid", &q, &p);
}

/// Both agents started frozen through their own marker (no filesystem is frozen): the same
/// commands are refused with the same text, and guest-info disables the same ones.
#[test]
fn frozen_state_refusals_agree() {
    let start = |kind: AgentKind, extra: &[&str]| {
        let state = tempfile::tempdir().expect("tempdir");
        for marker in ["qga.state.isfrozen", "porthole-agent.frozen"] {
            std::fs::write(state.path().join(marker), b"").expect("marker");
        }
        let mut args = vec!["-t".to_string(), state.path().display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let agent = Agent::start_with(kind, &AgentOpts::default().args(args))
            .unwrap_or_else(|e| panic!("{}: {e}", kind.label()));
        (agent, state)
    };
    let (qemu, _qs) = start(AgentKind::QemuGa, &[]);
    // No auto-thaw: a thaw must never reach the machine's real filesystems.
    let (porthole, _ps) = start(AgentKind::Porthole, &["--fsfreeze-auto-thaw", "0"]);
    let requests = [
        json!({"execute": "guest-fsfreeze-status"}),
        json!({"execute": "guest-ping"}),
        json!({"execute": "guest-sync", "arguments": {"id": 7}}),
        json!({"execute": "guest-exec", "arguments": {"path": "/bin/true"}}),
        json!({"execute": "guest-exec", "arguments": {"bogus": 1}}),
        json!({"execute": "guest-file-open", "arguments": {"path": "/etc/hostname"}}),
        json!({"execute": "guest-fsfreeze-freeze"}),
        json!({"execute": "guest-fsfreeze-freeze-list", "arguments": {"mountpoints": [NO_SUCH_MOUNT]}}),
        json!({"execute": "guest-fstrim"}),
        json!({"execute": "guest-set-user-password",
               "arguments": {"username": "x", "password": "!!", "crypted": false}}),
        json!({"execute": "guest-ssh-get-authorized-keys", "arguments": {"username": "root"}}),
        json!({"execute": "guest-suspend-ram"}),
        json!({"execute": "guest-get-osinfo"}),
        json!({"execute": "guest-nope"}),
    ];
    let run = |a: &Agent| {
        let mut c = connect(a);
        let replies: Vec<Value> = requests
            .iter()
            .map(|r| c.request(r).expect("reply"))
            .collect();
        (replies, c.ok("guest-info", Value::Null))
    };
    let (q, p) = (run(&qemu), run(&porthole));
    let mut d = Divergences::default();
    for ((req, qr), pr) in requests.iter().zip(&q.0).zip(&p.0) {
        d.same(&req.to_string(), qr, pr, &ShapeOpts::exact());
    }
    let enabled = |info: &Value, name: &Value| {
        info["supported_commands"]
            .as_array()
            .and_then(|l| l.iter().find(|c| &c["name"] == name))
            .map(|c| c["enabled"].clone())
    };
    for entry in q.1["supported_commands"].as_array().expect("qemu-ga list") {
        let name = &entry["name"];
        if let Some(pe) = enabled(&p.1, name) {
            d.same(
                &format!("guest-info enabled {name}"),
                &entry["enabled"],
                &pe,
                &ShapeOpts::exact(),
            );
        }
    }
    d.finish();
    assert_eq!(
        error_of(&q.0[3]),
        Some((
            "CommandNotFound".into(),
            "Command guest-exec has been disabled: the agent is in frozen state".into()
        ))
    );
}

/// A throwaway account, removed on drop.
struct TempUser(String);

impl TempUser {
    fn new(name: String) -> Self {
        let out = Command::new("useradd")
            .args(["-m", "-s", "/bin/false", &name])
            .output()
            .unwrap_or_else(|e| panic!("useradd (Debian package passwd): {e}"));
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(name)
    }

    fn shadow_field(&self) -> Option<String> {
        let shadow = std::fs::read_to_string("/etc/shadow").ok()?;
        let prefix = format!("{}:", self.0);
        shadow
            .lines()
            .find(|l| l.starts_with(&prefix))
            .and_then(|l| l.split(':').nth(1))
            .map(str::to_string)
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").args(["-r", &self.0]).output();
    }
}

/// The same script on two throwaway users, one per agent, run one agent after the other
/// (chpasswd and useradd lock /etc/shadow). Replies must be equal with the user name and home
/// replaced by placeholders; the shadow entries must hold the same hash.
#[test]
fn accounts_agree_on_throwaway_users() {
    assert!(
        std::fs::metadata("/etc/shadow").is_ok_and(|_| nix_is_root()),
        "the account tests create users: run them as root"
    );
    let pid = std::process::id() % 100000;
    let users = [
        TempUser::new(format!("phq{pid}")),
        TempUser::new(format!("php{pid}")),
    ];
    let hash = "$6$porthole$abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./abcdefghijklmnopqrstu";
    let steps: Vec<(&str, Value)> = vec![
        ("guest-ssh-get-authorized-keys", json!({"username": "$U"})),
        (
            "guest-ssh-remove-authorized-keys",
            json!({"username": "$U", "keys": ["k"]}),
        ),
        (
            "guest-ssh-add-authorized-keys",
            json!({"username": "$U", "keys": ["ssh-rsa AAA one", "ssh-ed25519 BBB two", "ssh-rsa AAA one"]}),
        ),
        ("guest-ssh-get-authorized-keys", json!({"username": "$U"})),
        (
            "guest-ssh-add-authorized-keys",
            json!({"username": "$U", "keys": [" ssh-rsa CCC three "]}),
        ),
        ("guest-ssh-get-authorized-keys", json!({"username": "$U"})),
        (
            "guest-ssh-remove-authorized-keys",
            json!({"username": "$U", "keys": ["ssh-rsa AAA one", "absent"]}),
        ),
        ("guest-ssh-get-authorized-keys", json!({"username": "$U"})),
        (
            "guest-ssh-add-authorized-keys",
            json!({"username": "$U", "keys": [], "reset": true}),
        ),
        ("guest-ssh-get-authorized-keys", json!({"username": "$U"})),
        (
            "guest-ssh-add-authorized-keys",
            json!({"username": "$U", "keys": ["ssh-rsa DDD four"], "reset": true}),
        ),
        ("guest-ssh-get-authorized-keys", json!({"username": "$U"})),
        (
            "guest-set-user-password",
            json!({"username": "nosuchuser-porthole", "password": b64("pw"), "crypted": false}),
        ),
        (
            "guest-set-user-password",
            json!({"username": "$U", "password": b64("a\nb"), "crypted": false}),
        ),
        (
            "guest-set-user-password",
            json!({"username": "$U", "password": b64("Plain 42 password!"), "crypted": false}),
        ),
        (
            "guest-set-user-password",
            json!({"username": "$U", "password": b64(hash), "crypted": true}),
        ),
    ];
    let run = |kind: AgentKind, user: &TempUser| {
        let agent = Agent::start(kind).unwrap_or_else(|e| panic!("{}: {e}", kind.label()));
        let mut c = connect(&agent);
        let home = format!("/home/{}", user.0);
        steps
            .iter()
            .map(|(cmd, args)| {
                let text = args.to_string().replace("$U", &user.0);
                let args: Value = serde_json::from_str(&text).expect("args");
                let mut reply = c.execute(cmd, args).expect("reply");
                porthole_conformance::replace_in_strings(&mut reply, &home, "$HOME");
                porthole_conformance::replace_in_strings(&mut reply, &user.0, "$U");
                reply
            })
            .collect::<Vec<_>>()
    };
    let q = run(AgentKind::QemuGa, &users[0]);
    let p = run(AgentKind::Porthole, &users[1]);
    let mut d = Divergences::default();
    for (((cmd, args), qr), pr) in steps.iter().zip(&q).zip(&p) {
        d.same(&format!("{cmd} {args}"), qr, pr, &ShapeOpts::exact());
    }
    d.finish();
    assert_eq!(
        q[3],
        json!({"return": {"keys": ["ssh-ed25519 BBB two", "ssh-rsa AAA one"]}})
    );
    assert_eq!(users[0].shadow_field().as_deref(), Some(hash));
    assert_eq!(users[1].shadow_field().as_deref(), Some(hash));
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}
