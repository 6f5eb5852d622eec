//! The built `porthole` binary against real agents: output, JSON, exit codes, error messages.

#[path = "../../client/tests/common/mod.rs"]
mod common;

use common::{agent_kinds, Agent};
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn porthole(agent: &Agent, args: &[&str]) -> Output {
    porthole_with_input(agent, args, b"")
}

fn porthole_with_input(agent: &Agent, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_porthole"))
        .arg("agent")
        .arg("--socket")
        .arg(&agent.socket)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run porthole");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).expect("stdin");
    }
    child.wait_with_output().expect("porthole output")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn ping_and_queries() {
    for kind in agent_kinds() {
        let agent = Agent::start(kind, &[]);
        let out = porthole(&agent, &["ping"]);
        assert!(out.status.success(), "{kind:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "ok\n");

        let out = porthole(&agent, &["hostname"]);
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
        assert_eq!(stdout(&out), format!("{}\n", host.trim()), "{kind:?}");

        let out = porthole(&agent, &["info"]);
        let text = stdout(&out);
        assert!(text.starts_with("version: "), "{kind:?}: {text}");
        let ping_row = text
            .lines()
            .find(|l| l.starts_with("guest-ping "))
            .expect("guest-ping row");
        assert_eq!(
            ping_row.split_whitespace().collect::<Vec<_>>(),
            ["guest-ping", "yes", "yes"]
        );

        let out = porthole(&agent, &["timezone"]);
        assert!(
            stdout(&out).lines().any(|l| l.starts_with("offset: ")),
            "{kind:?}: {}",
            stdout(&out)
        );

        for query in ["os", "time", "users"] {
            let out = porthole(&agent, &[query]);
            assert!(out.status.success(), "{kind:?} {query}: {}", stderr(&out));
            assert!(!out.stdout.is_empty(), "{kind:?} {query}");
        }
    }
}

#[test]
fn os_json_is_the_raw_return_value() {
    for kind in agent_kinds() {
        let agent = Agent::start(kind, &[]);
        let out = porthole(&agent, &["os", "--json"]);
        assert!(out.status.success(), "{kind:?}: {}", stderr(&out));
        let value: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
        assert_eq!(value["machine"], std::env::consts::ARCH, "{kind:?}");
        let os_release = std::fs::read_to_string("/etc/os-release").expect("os-release");
        let id = os_release
            .lines()
            .find_map(|l| l.strip_prefix("ID="))
            .expect("ID=");
        assert_eq!(value["id"], id.trim_matches('"'), "{kind:?}");
    }
}

#[test]
fn exec_propagates_output_and_exit_status() {
    for kind in agent_kinds() {
        let agent = Agent::start(kind, &[]);
        let script = "printf 'to stdout'; printf 'to stderr' >&2; exit 7";
        let out = porthole(&agent, &["exec", "--", "sh", "-c", script]);
        assert_eq!(out.status.code(), Some(7), "{kind:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "to stdout");
        assert_eq!(stderr(&out), "to stderr");

        let out = porthole(&agent, &["exec", "sh", "-c", "kill -TERM $$"]);
        assert_eq!(out.status.code(), Some(128 + 15), "{kind:?}");

        let out = porthole_with_input(
            &agent,
            &[
                "exec",
                "--stdin",
                "-",
                "--env",
                "GREETING=hi",
                "--",
                "sh",
                "-c",
                "printf \"$GREETING \"; cat",
            ],
            b"from stdin",
        );
        assert!(out.status.success(), "{kind:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "hi from stdin", "{kind:?}");

        let out = porthole(
            &agent,
            &["exec", "--no-capture", "--", "sh", "-c", "echo x; exit 2"],
        );
        assert_eq!(out.status.code(), Some(2), "{kind:?}");
        assert!(out.stdout.is_empty(), "{kind:?}");

        let out = porthole(&agent, &["exec", "--json", "--", "sh", "-c", "printf j"]);
        assert!(out.status.success(), "{kind:?}: {}", stderr(&out));
        let value: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(value["exitcode"], 0, "{kind:?}");
        assert_eq!(value["out-data"], "ag==", "{kind:?}");
    }
}

#[test]
fn cat_copies_a_guest_file() {
    for kind in agent_kinds() {
        let agent = Agent::start(kind, &[]);
        let path = agent.path("blob");
        // Over two read chunks, every byte value.
        let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).expect("write blob");
        let out = porthole(&agent, &["cat", path.to_str().expect("utf-8")]);
        assert!(out.status.success(), "{kind:?}: {}", stderr(&out));
        assert!(out.stdout == data, "{kind:?}: cat output differs");

        let out = porthole(&agent, &["cat", "/nonexistent/file"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).starts_with("porthole: agent error (GenericError): "),
            "{kind:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn call_accepts_both_forms_and_reports_agent_errors() {
    for kind in agent_kinds() {
        let agent = Agent::start(kind, &[]);
        let out = porthole(&agent, &["call", "guest-sync", r#"{"id": 12}"#]);
        assert!(out.status.success(), "{kind:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "12\n");

        let out = porthole(&agent, &["call", r#"{"execute": "guest-get-host-name"}"#]);
        let value: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert!(value["host-name"].is_string(), "{kind:?}: {value}");

        let out = porthole(&agent, &["call", "guest-nope"]);
        assert_eq!(out.status.code(), Some(1), "{kind:?}");
        assert_eq!(
            stderr(&out),
            "porthole: agent error (CommandNotFound): The command guest-nope has not been found\n"
        );
    }
}

#[test]
fn shutdown_reports_a_disabled_command() {
    for kind in agent_kinds() {
        let agent = Agent::start(kind, &["-b", "guest-shutdown"]);
        let out = porthole(&agent, &["shutdown", "--mode", "reboot"]);
        assert_eq!(out.status.code(), Some(1), "{kind:?}");
        assert!(
            stderr(&out).contains("Command guest-shutdown has been disabled"),
            "{kind:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn missing_socket_is_explained() {
    let out = Command::new(env!("CARGO_BIN_EXE_porthole"))
        .args(["agent", "--socket", "/nonexistent/qga.sock", "ping"])
        .output()
        .expect("run porthole");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "porthole: no such socket /nonexistent/qga.sock: is the VM running and does it have a \
         channel for the agent?\n"
    );
}

/// Runs `porthole agent --socket SOCKET --timeout 1 ARGS` and returns its output and how long
/// it took.
fn porthole_at(socket: &std::path::Path, args: &[&str]) -> (Output, std::time::Duration) {
    let start = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_porthole"))
        .arg("agent")
        .arg("--socket")
        .arg(socket)
        .args(["--timeout", "1"])
        .args(args)
        .output()
        .expect("run porthole");
    (out, start.elapsed())
}

/// Wrong sockets: one nobody listens on, one whose peer never speaks (a channel with no agent
/// behind it). Each ends within the timeout (1 s) plus a margin, with an error naming what to
/// check.
#[test]
fn wrong_sockets_fail_fast_and_say_what_to_check() {
    use std::os::unix::net::UnixListener;
    let dir = tempfile::tempdir().expect("tempdir");

    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).expect("bind"));
    let (out, took) = porthole_at(&stale, &["ping"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!("porthole: nothing is listening on {}\n", stale.display())
    );
    assert!(took < std::time::Duration::from_secs(3), "{took:?}");

    // A listener that accepts and reads but never answers: a port with no agent behind it.
    let mute = dir.path().join("mute.sock");
    let listener = UnixListener::bind(&mute).expect("bind");
    let peer = std::thread::spawn(move || {
        use std::io::Read;
        if let Ok((mut stream, _)) = listener.accept() {
            let mut sink = [0u8; 4096];
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        }
    });
    let (out, took) = porthole_at(&mute, &["ping"]);
    peer.join().expect("peer");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "porthole: the agent did not answer guest-sync-delimited within 1s: is the agent running \
         inside the guest? (virtio-serial gives no connection signal, so a missing agent looks \
         like silence)\n"
    );
    assert!(
        took >= std::time::Duration::from_secs(1) && took < std::time::Duration::from_secs(4),
        "{took:?}"
    );
}
