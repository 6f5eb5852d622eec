//! porthole-agent behaviour beyond qemu-ga's (qemu-ga parity lives in crates/conformance):
//! concurrent clients, handles across connections and restarts, command filters from every
//! source, the JSON-RPC dialect, every capture mode, output caps, and the isa-serial transport.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

fn b64(data: &Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(data.as_str().unwrap_or(""))
        .unwrap_or_default()
}

#[test]
fn serves_several_clients_at_once() -> TestResult {
    let agent = Agent::start(&[])?;
    let mut clients: Vec<Client> = (0..4).map(|_| agent.connect()).collect::<Result<_, _>>()?;
    // Each client leaves half a request pending while the others are served.
    for (i, client) in clients.iter_mut().enumerate() {
        client.send_raw(
            format!("{{\"execute\":\"guest-sync\",\"arguments\":{{\"id\":{i}").as_bytes(),
        )?;
    }
    for (i, client) in clients.iter_mut().enumerate().rev() {
        client.send_raw(b"}}")?;
        assert_eq!(client.reply()?, json!({"return": i}));
    }
    Ok(())
}

#[test]
fn file_handles_outlive_connections_and_restarts() -> TestResult {
    let agent = Agent::start(&[])?;
    let file = agent.statedir.parent().ok_or("no parent")?.join("data.txt");
    std::fs::write(&file, "0123456789")?;
    let handle = agent
        .connect()?
        .execute("guest-file-open", json!({"path": file}))?["return"]
        .clone();
    assert_eq!(handle, json!(1000));
    // A new connection reads through the handle the first one opened.
    let mut second = agent.connect()?;
    let read = second.execute("guest-file-read", json!({"handle": handle, "count": 4}))?;
    assert_eq!(b64(&read["return"]["buf-b64"]), b"0123");
    let (dir, statedir) = agent.stop()?;
    // A restarted agent never reuses a number a host may still hold.
    let agent = Agent::start_in(dir, statedir, &[])?;
    let again = agent
        .connect()?
        .execute("guest-file-open", json!({"path": file}))?;
    assert_eq!(again["return"], json!(1001));
    Ok(())
}

#[test]
fn command_filters_from_the_command_line_and_config_files() -> TestResult {
    let agent = Agent::start(&["-b", "guest-exec,guest-file-open"])?;
    let mut client = agent.connect()?;
    let refused = client.execute("guest-exec", json!({"path": "true"}))?;
    assert_eq!(
        refused["error"],
        json!({"class": "CommandNotFound", "desc": "Command guest-exec has been disabled"})
    );
    let info = client.execute("guest-info", json!({}))?;
    let commands = info["return"]["supported_commands"]
        .as_array()
        .ok_or("no list")?;
    let enabled = |name: &str| {
        commands
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["enabled"].clone())
    };
    assert_eq!(enabled("guest-exec"), Some(json!(false)));
    assert_eq!(enabled("guest-ping"), Some(json!(true)));
    drop(agent);

    // porthole's TOML file, and qemu-ga's keyfile, each with an allow list.
    let dir = tempfile::tempdir()?;
    let toml = dir.path().join("agent.toml");
    std::fs::write(&toml, "allow-rpcs = [\"guest-ping\", \"guest-info\"]\n")?;
    let keyfile = dir.path().join("qemu-ga.conf");
    std::fs::write(&keyfile, "[general]\nallow-rpcs=guest-ping;guest-info\n")?;
    for config in [&toml, &keyfile] {
        let agent = Agent::start(&["-c", &config.to_string_lossy()])?;
        let mut client = agent.connect()?;
        assert_eq!(
            client.execute("guest-ping", json!({}))?,
            json!({"return": {}})
        );
        let refused = client.execute("guest-get-time", json!({}))?;
        assert_eq!(
            refused["error"]["class"],
            json!("CommandNotFound"),
            "{config:?}"
        );
    }
    Ok(())
}

#[test]
fn dump_conf_prints_a_keyfile() -> TestResult {
    let out = Command::new(env!("CARGO_BIN_EXE_porthole-agent"))
        .args([
            "-m",
            "unix-listen",
            "-p",
            "/run/x.sock",
            "-b",
            "guest-exec",
            "-D",
            "-c",
            "/nonexistent",
        ])
        .output()?;
    // -c naming a missing file is an error, not silently ignored.
    assert!(!out.status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_porthole-agent"))
        .args([
            "-m",
            "unix-listen",
            "-p",
            "/run/x.sock",
            "-b",
            "guest-exec",
            "-D",
        ])
        .env("HOME", "/nonexistent")
        .output()?;
    let text = String::from_utf8(out.stdout)?;
    assert!(text.starts_with("[general]\n"), "{text}");
    assert!(
        text.contains("method=unix-listen\n") && text.contains("block-rpcs=guest-exec\n"),
        "{text}"
    );
    Ok(())
}

#[test]
fn jsonrpc_dialect() -> TestResult {
    let agent = Agent::start(&[])?;
    let mut client = agent.connect()?;
    let ok = client
        .call(&json!({"jsonrpc": "2.0", "method": "guest-sync", "params": {"id": 9}, "id": "a"}))?;
    assert_eq!(ok, json!({"jsonrpc": "2.0", "result": 9, "id": "a"}));
    // A notification gets no reply: the next reply belongs to the next request.
    client.send_raw(br#"{"jsonrpc":"2.0","method":"guest-ping"}"#)?;
    let missing = client.call(&json!({"jsonrpc": "2.0", "method": "nope", "id": 2}))?;
    assert_eq!(missing["error"]["code"], json!(-32601));
    assert_eq!(missing["id"], json!(2));
    let invalid = client
        .call(&json!({"jsonrpc": "2.0", "method": "guest-sync", "params": {"id": "x"}, "id": 3}))?;
    assert_eq!(invalid["error"]["code"], json!(-32602));
    // After JSON-RPC traffic, unparseable input is answered in JSON-RPC with id null.
    client.send_raw(b"{\"jsonrpc\":\"2.0\",\"method\":]")?;
    let parse = client.reply()?;
    assert_eq!(parse["error"]["code"], json!(-32700), "{parse}");
    assert_eq!(parse["id"], Value::Null);
    let batch = client.call(&json!([
        {"jsonrpc": "2.0", "method": "guest-sync", "params": {"id": 1}, "id": 1},
        {"jsonrpc": "2.0", "method": "guest-ping"},
        {"jsonrpc": "2.0", "method": "guest-sync", "params": {"id": 2}, "id": 2}
    ]))?;
    assert_eq!(
        batch,
        json!([{"jsonrpc": "2.0", "result": 1, "id": 1}, {"jsonrpc": "2.0", "result": 2, "id": 2}])
    );
    // The same connection still speaks QGA.
    assert_eq!(
        client.execute("guest-ping", json!({}))?,
        json!({"return": {}})
    );
    Ok(())
}

#[test]
fn every_capture_output_mode() -> TestResult {
    let agent = Agent::start(&[])?;
    let mut client = agent.connect()?;
    let script = "echo out; echo err >&2";
    let run = |client: &mut Client, mode: Value| {
        client.exec_wait(json!({"path": "sh", "arg": ["-c", script], "capture-output": mode}))
    };
    let separated = run(&mut client, json!("separated"))?;
    assert_eq!(
        (b64(&separated["out-data"]), b64(&separated["err-data"])),
        (b"out\n".to_vec(), b"err\n".to_vec())
    );
    let stdout = run(&mut client, json!("stdout"))?;
    assert_eq!(b64(&stdout["out-data"]), b"out\n");
    assert!(stdout.get("err-data").is_none());
    let stderr = run(&mut client, json!("stderr"))?;
    assert_eq!(b64(&stderr["err-data"]), b"err\n");
    assert!(stderr.get("out-data").is_none());
    let merged = run(&mut client, json!("merged"))?;
    assert_eq!(b64(&merged["out-data"]), b"out\nerr\n");
    assert!(merged.get("err-data").is_none());
    let none = run(&mut client, json!("none"))?;
    assert!(none.get("out-data").is_none() && none.get("err-data").is_none());
    assert_eq!(none["exitcode"], json!(0));
    Ok(())
}

#[test]
fn output_is_capped_at_16_mib_and_flagged() -> TestResult {
    let agent = Agent::start(&[])?;
    let mut client = agent.connect()?;
    let status = client.exec_wait(
        json!({"path": "head", "arg": ["-c", "20000000", "/dev/zero"], "capture-output": true}),
    )?;
    assert_eq!(status["out-truncated"], json!(true));
    assert_eq!(b64(&status["out-data"]).len(), 16 << 20);
    assert_eq!(status["exitcode"], json!(0));
    Ok(())
}

#[test]
fn exec_env_replaces_environment_and_searches_its_path() -> TestResult {
    let agent = Agent::start(&[])?;
    let mut client = agent.connect()?;
    let status = client.exec_wait(
        json!({"path": "env", "env": ["ONLY=1", "PATH=/usr/bin:/bin"], "capture-output": true}),
    )?;
    let out = String::from_utf8(b64(&status["out-data"]))?;
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["ONLY=1", "PATH=/usr/bin:/bin"]);
    Ok(())
}

#[test]
fn a_vanished_client_loses_nothing_for_the_next() -> TestResult {
    let agent = Agent::start(&[])?;
    {
        let mut client = agent.connect()?;
        client.send_raw(br#"{"execute":"guest-sync","argum"#)?;
    }
    let mut next = agent.connect()?;
    assert_eq!(
        next.execute("guest-sync", json!({"id": 5}))?,
        json!({"return": 5})
    );
    Ok(())
}

#[test]
fn shutdown_sends_nothing_on_success_and_reports_failure() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("args");
    let ok = dir.path().join("shutdown-ok");
    std::fs::write(&ok, format!("#!/bin/sh\necho \"$@\" > {}\n", log.display()))?;
    let fail = dir.path().join("shutdown-fail");
    std::fs::write(&fail, "#!/bin/sh\nexit 3\n")?;
    for script in [&ok, &fail] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755))?;
    }
    for (script, expect_reply) in [(&ok, false), (&fail, true)] {
        let config = dir.path().join("agent.toml");
        std::fs::write(
            &config,
            format!("shutdown-command = \"{}\"\n", script.display()),
        )?;
        let agent = Agent::start(&["-c", &config.to_string_lossy()])?;
        let mut client = agent.connect()?;
        client.send_raw(br#"{"execute":"guest-shutdown","arguments":{"mode":"reboot"}}"#)?;
        // The sync reply comes first only if shutdown sent nothing.
        let reply = client.execute("guest-sync", json!({"id": 1}))?;
        if expect_reply {
            assert_eq!(reply["error"]["class"], json!("GenericError"), "{reply}");
        } else {
            assert_eq!(reply, json!({"return": 1}));
            assert_eq!(
                std::fs::read_to_string(&log)?,
                "-r +0 hypervisor initiated shutdown\n"
            );
        }
    }
    Ok(())
}

#[test]
fn isa_serial_over_a_pty() -> TestResult {
    let pty = nix::pty::openpty(None, None)?;
    let slave = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&pty.slave)
    ))?;
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_porthole-agent"))
        .args(["-m", "isa-serial", "-p"])
        .arg(&slave)
        .arg("-t")
        .arg(dir.path().join("state"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut master = std::fs::File::from(pty.master);
    // The agent puts the line in raw mode; until it has, the tty would echo. Retry the sync.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let found = loop {
        master
            .write_all(b"\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":4242}}")?;
        std::thread::sleep(Duration::from_millis(200));
        let mut buf = [0u8; 4096];
        let fd = std::os::fd::AsFd::as_fd(&master);
        let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16))? > 0 {
            let n = master.read(&mut buf)?;
            seen.extend_from_slice(&buf[..n]);
        }
        if seen.windows(8).any(|w| w == b"\"return\"")
            && String::from_utf8_lossy(&seen).contains("4242}")
        {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        found,
        "no sync reply over the serial line; saw {:?}",
        String::from_utf8_lossy(&seen)
    );
    Ok(())
}

/// guest-fsfreeze-status reads the frozen marker in the state directory on every call, so an
/// agent restarted while the guest is frozen reports "frozen".
#[test]
fn fsfreeze_status_follows_the_frozen_marker() -> TestResult {
    let agent = Agent::start(&[])?;
    let mut client = agent.connect()?;
    let status = |c: &mut Client| -> Result<Value, Box<dyn std::error::Error>> {
        c.execute("guest-fsfreeze-status", json!({}))
    };
    assert_eq!(status(&mut client)?, json!({"return": "thawed"}));
    let marker = porthole_agent::commands::freeze::frozen_marker(&agent.statedir);
    std::fs::write(&marker, b"")?;
    assert_eq!(status(&mut client)?, json!({"return": "frozen"}));
    std::fs::remove_file(&marker)?;
    assert_eq!(status(&mut client)?, json!({"return": "thawed"}));
    Ok(())
}

/// Setter arrays from the host are bounded: more entries than any machine has CPUs or memory
/// blocks get a clear error (nothing is applied) and the agent keeps serving.
#[test]
fn oversized_setter_arrays_are_refused() -> TestResult {
    use porthole_agent::commands::{cpu::MAX_VCPUS, memory::MAX_MEMORY_BLOCKS};
    let agent = Agent::start(&[])?;
    let mut client = agent.connect()?;
    let vcpus = vec![json!({"logical-id": 0, "online": true}); MAX_VCPUS + 1];
    let r = client.execute("guest-set-vcpus", json!({ "vcpus": vcpus }))?;
    assert_eq!(r["error"]["class"], "GenericError", "{r}");
    let desc = r["error"]["desc"].as_str().unwrap_or("");
    assert!(desc.starts_with("too many vcpus: 16385"), "{desc}");
    let blocks = vec![json!({"phys-index": 1, "online": true}); MAX_MEMORY_BLOCKS + 1];
    let r = client.execute("guest-set-memory-blocks", json!({ "mem-blks": blocks }))?;
    let desc = r["error"]["desc"].as_str().unwrap_or("");
    assert!(desc.starts_with("too many memory blocks"), "{r}");
    // At the limit the request is processed: every entry of a nonexistent CPU fails, the first
    // failure is the error.
    let vcpus = vec![json!({"logical-id": -5, "online": true}); MAX_VCPUS];
    let r = client.execute("guest-set-vcpus", json!({ "vcpus": vcpus }))?;
    assert_eq!(
        r["error"]["desc"],
        "open(\"/sys/devices/system/cpu/cpu-5/\"): No such file or directory"
    );
    assert_eq!(
        client.execute("guest-ping", json!({}))?,
        json!({"return": {}})
    );
    Ok(())
}

/// A unix-listen socket is no back door for the guest's users: mode 0600, owned by the agent's
/// user, or by `unix-socket-owner`; an unknown owner stops the agent before it serves.
#[test]
fn unix_listen_socket_is_0600_and_its_owner_is_configurable() -> TestResult {
    use std::os::unix::fs::MetadataExt;
    let agent = Agent::start(&[])?;
    let meta = std::fs::metadata(agent.path("agent.sock"))?;
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    drop(agent);

    let agent = Agent::with_config("unix-socket-owner = \"nobody:nogroup\"\n", &[])?;
    let meta = std::fs::metadata(agent.path("agent.sock"))?;
    assert_eq!(meta.mode() & 0o777, 0o600);
    let nobody = nix::unistd::User::from_name("nobody")?.ok_or("no user nobody")?;
    let nogroup = nix::unistd::Group::from_name("nogroup")?.ok_or("no group nogroup")?;
    assert_eq!(
        (meta.uid(), meta.gid()),
        (nobody.uid.as_raw(), nogroup.gid.as_raw())
    );
    drop(agent);

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "unix-socket-owner = \"no-such-user-here\"\n")?;
    let out = Command::new(env!("CARGO_BIN_EXE_porthole-agent"))
        .args(["-m", "unix-listen", "-p"])
        .arg(dir.path().join("agent.sock"))
        .arg("-t")
        .arg(dir.path().join("state"))
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("no user 'no-such-user-here'"), "{stderr}");
    assert!(!dir.path().join("agent.sock").exists());
    Ok(())
}
