//! The client against real agents (qemu-ga, and porthole-agent when built): handshake recovery,
//! every typed call, exec, files, agent errors.

mod common;

use common::{agent_kinds, Agent};
use porthole_client::commands::{CaptureOutput, ExecArgs, Whence};
use porthole_client::{Client, ClientError, Options, UnixTransport};
use serde_json::json;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn connect(agent: &Agent) -> Client {
    Client::connect_unix(&agent.socket, Options::default())
        .unwrap_or_else(|e| panic!("{:?}: connect: {e}", agent.kind))
}

fn os_release_id() -> String {
    let text = std::fs::read_to_string("/etc/os-release").expect("/etc/os-release");
    text.lines()
        .find_map(|l| l.strip_prefix("ID="))
        .map(|v| v.trim_matches('"').to_string())
        .expect("ID= in /etc/os-release")
}

/// Stale replies and a half-written request from an "earlier client" sit on the connection; the
/// handshake must flush the half request (0xFF) and skip every stale reply, so the next call gets
/// its own answer (a stale guest-get-osinfo reply would not decode as a host name).
#[test]
fn handshake_skips_stale_replies_and_half_requests() {
    for kind in agent_kinds() {
        let agent = Agent::start(kind, &[]);
        let mut stream = UnixStream::connect(&agent.socket).expect("connect");
        stream
            .write_all(
                b"\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":42}}\
                  {\"execute\":\"guest-get-osinfo\"}{\"execute\":\"guest-info\"}\
                  {\"execute\":\"guest-get-ti",
            )
            .expect("write stale traffic");
        std::thread::sleep(Duration::from_millis(300));
        let transport = UnixTransport::from_stream(stream, agent.socket.clone());
        let mut client = Client::with_transport(Box::new(transport), Options::default())
            .unwrap_or_else(|e| panic!("{kind:?}: handshake: {e}"));
        let expected = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
        assert_eq!(
            client.host_name().expect("host name"),
            expected.trim(),
            "{kind:?}"
        );
        client.ping().expect("ping after handshake");
    }
}

#[test]
fn typed_calls() {
    for kind in agent_kinds() {
        let agent = Agent::start(kind, &[]);
        let mut client = connect(&agent);
        client.ping().expect("ping");

        let info = client.info().expect("info");
        assert!(!info.version.is_empty(), "{kind:?}");
        for name in ["guest-ping", "guest-sync-delimited", "guest-exec"] {
            let entry = info.supported_commands.iter().find(|c| c.name == name);
            assert!(
                entry.is_some_and(|c| c.enabled),
                "{kind:?}: {name} not enabled"
            );
        }
        let shutdown = info
            .supported_commands
            .iter()
            .find(|c| c.name == "guest-shutdown")
            .expect("guest-shutdown listed");
        assert!(!shutdown.success_response, "{kind:?}");

        let os = client.os_info().expect("os info");
        assert_eq!(os.id.as_deref(), Some(os_release_id().as_str()), "{kind:?}");
        assert_eq!(os.machine.as_deref(), Some(std::env::consts::ARCH));

        let tz = client.timezone().expect("timezone");
        assert!(
            tz.offset.abs() <= 14 * 3600,
            "{kind:?}: offset {}",
            tz.offset
        );

        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as i64;
        let guest = client.time().expect("time");
        assert!(
            (guest - now).abs() < 5_000_000_000,
            "{kind:?}: {guest} vs {now}"
        );

        client.users().expect("users");

        // A negative time is refused before the clock is touched; this exercises the request
        // without changing the host's clock.
        match client.set_time(Some(-1)) {
            Err(ClientError::Agent { class, .. }) => assert_eq!(class, "GenericError"),
            other => panic!("{kind:?}: set_time(-1) gave {other:?}"),
        }
    }
}

#[test]
fn agent_errors_keep_the_connection_usable() {
    for kind in agent_kinds() {
        let agent = Agent::start(kind, &[]);
        let mut client = connect(&agent);
        let err = client
            .call(
                "guest-nope",
                serde_json::Value::Null,
                Duration::from_secs(5),
            )
            .expect_err("unknown command");
        assert!(err.is_command_not_found(), "{kind:?}: {err}");
        assert_eq!(
            err.to_string(),
            "agent error (CommandNotFound): The command guest-nope has not been found"
        );
        let err = client
            .call("guest-sync", json!({"id": "x"}), Duration::from_secs(5))
            .expect_err("wrong type");
        assert_eq!(
            err.to_string(),
            "agent error (GenericError): Invalid parameter type for 'id', expected: integer"
        );
        let value = client
            .call("guest-sync", json!({"id": 7}), Duration::from_secs(5))
            .expect("raw call");
        assert_eq!(value, json!(7));
    }
}

#[test]
fn exec_wait_collects_output_and_status() {
    for kind in agent_kinds() {
        let agent = Agent::start(kind, &[]);
        let mut client = connect(&agent);
        let poll = Duration::from_millis(20);
        let limit = Some(Duration::from_secs(20));

        let args = ExecArgs {
            path: "/bin/sh".into(),
            arg: Some(vec![
                "-c".into(),
                "printf out; printf err >&2; exit 3".into(),
            ]),
            capture_output: Some(CaptureOutput::Flag(true)),
            ..ExecArgs::default()
        };
        let out = client.exec_wait(&args, poll, limit).expect("exec");
        assert_eq!(out.stdout, b"out", "{kind:?}");
        assert_eq!(out.stderr, b"err", "{kind:?}");
        assert_eq!((out.exitcode, out.signal), (Some(3), None), "{kind:?}");
        assert_eq!(out.shell_status(), 3);

        let input: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        let cat = ExecArgs {
            path: "cat".into(),
            input_data: Some(base64_encode(&input)),
            capture_output: Some(CaptureOutput::Flag(true)),
            ..ExecArgs::default()
        };
        let out = client.exec_wait(&cat, poll, limit).expect("exec cat");
        assert!(out.stdout == input, "{kind:?}: cat output differs");

        let killed = ExecArgs {
            path: "/bin/sh".into(),
            arg: Some(vec!["-c".into(), "kill -9 $$".into()]),
            ..ExecArgs::default()
        };
        let out = client.exec_wait(&killed, poll, limit).expect("exec kill");
        assert_eq!(out.signal, Some(9), "{kind:?}");
        assert_eq!(out.shell_status(), 137);

        let sleeper = ExecArgs {
            path: "sleep".into(),
            arg: Some(vec!["5".into()]),
            ..ExecArgs::default()
        };
        let err = client
            .exec_wait(&sleeper, poll, Some(Duration::from_millis(300)))
            .expect_err("exec timeout");
        assert!(
            matches!(err, ClientError::ExecTimeout { .. }),
            "{kind:?}: {err}"
        );
        let pid = client.exec(&sleeper).expect("exec");
        assert!(!client.exec_status(pid).expect("status").exited);
    }
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[test]
fn file_round_trip() {
    for kind in agent_kinds() {
        let agent = Agent::start(kind, &[]);
        let mut client = connect(&agent);
        let path = agent.path("data.bin");
        let path = path.to_str().expect("utf-8 path");

        // Larger than one read chunk, with every byte value.
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        client.write_file(path, &data, 1 << 20).expect("write");
        assert!(std::fs::read(path).expect("read back") == data, "{kind:?}");
        let mut copy = Vec::new();
        let n = client.read_file_to(path, 1 << 20, &mut copy).expect("read");
        assert_eq!(n, data.len() as u64);
        assert!(copy == data, "{kind:?}: round trip differs");

        let handle = client.file_open(path, Some("w+")).expect("open w+");
        let written = client.file_write(handle, b"hello world").expect("write");
        assert_eq!(written.count, 11);
        client.file_flush(handle).expect("flush");
        let seek = client
            .file_seek(handle, 6, Whence::Name("set".into()))
            .expect("seek");
        assert_eq!(seek.position, 6);
        let chunk = client.file_read(handle, Some(100)).expect("read");
        assert_eq!(chunk.data, b"world");
        assert!(chunk.eof);
        let end = client.file_seek(handle, -5, Whence::Code(2)).expect("seek");
        assert_eq!(end.position, 6);
        client.file_close(handle).expect("close");
        let err = client.file_read(handle, None).expect_err("closed handle");
        assert!(matches!(err, ClientError::Agent { .. }), "{kind:?}: {err}");

        let missing = agent.path("missing");
        let err = client
            .file_open(missing.to_str().expect("utf-8"), None)
            .expect_err("missing file");
        assert!(err.to_string().contains("No such file"), "{kind:?}: {err}");
    }
}

/// guest-shutdown has no success response; a disabled one answers with an error, which
/// call_no_reply must report, and the connection must resynchronise afterwards.
#[test]
fn no_reply_command_reports_errors() {
    for kind in agent_kinds() {
        let agent = Agent::start(kind, &["-b", "guest-shutdown"]);
        let mut client = connect(&agent);
        let err = client
            .shutdown(Some("halt"), Duration::from_secs(5))
            .expect_err("disabled shutdown");
        assert!(err.is_command_not_found(), "{kind:?}: {err}");
        assert!(err.to_string().contains("has been disabled"), "{err}");
        client.ping().expect("ping after no-reply command");
    }
}
