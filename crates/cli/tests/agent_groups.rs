//! `porthole agent` command groups against real agents (porthole-agent, and qemu-ga where it
//! has the command): human and JSON output checked against what this machine says, copies
//! checked with sha256sum, streamed exec, users made with useradd.

#[path = "../../client/tests/common/mod.rs"]
mod common;

use common::{agent_kinds, Agent, AgentKind};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn porthole(agent: &Agent, args: &[&str]) -> Output {
    porthole_with_input(agent, args, b"")
}

fn porthole_with_input(agent: &Agent, args: &[&str], input: &[u8]) -> Output {
    let mut child = spawn(agent, args, Stdio::piped());
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).expect("stdin");
    }
    child.wait_with_output().expect("porthole output")
}

fn spawn(agent: &Agent, args: &[&str], stdin: Stdio) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_porthole"))
        .arg("agent")
        .arg("--socket")
        .arg(&agent.socket)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run porthole")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs and expects success; returns stdout.
fn ok(agent: &Agent, args: &[&str]) -> String {
    let out = porthole(agent, args);
    assert!(
        out.status.success(),
        "{:?} {args:?}: {}",
        agent.kind,
        stderr(&out)
    );
    stdout(&out)
}

fn json(agent: &Agent, args: &[&str]) -> Value {
    // Before the subcommand, so that exec does not take it as the program's argument.
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let text = ok(agent, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum (Debian package coreutils)");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

/// Pseudo-random bytes (xorshift), so chunk boundaries are not all alike.
fn blob(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn online_cpus() -> usize {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("cpuinfo");
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count()
}

/// A throwaway user with a home directory, removed on drop.
struct TempUser(String);

impl TempUser {
    fn new(tag: &str) -> TempUser {
        let name = format!("ph{tag}{}", std::process::id() % 100_000);
        let _ = Command::new("userdel").args(["-r", &name]).output();
        let status = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", &name])
            .status()
            .expect("useradd (Debian package passwd; the tests run as root)");
        assert!(status.success(), "useradd {name} failed");
        TempUser(name)
    }

    fn shadow_hash(&self) -> String {
        let shadow = std::fs::read_to_string("/etc/shadow").expect("read /etc/shadow as root");
        shadow
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{}:", self.0)))
            .and_then(|rest| rest.split(':').next())
            .expect("shadow entry")
            .to_string()
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").args(["-r", &self.0]).output();
    }
}

#[test]
fn filesystems_and_disks() {
    for kind in agent_kinds() {
        let agent = Agent::start(kind, &[]);
        let fsinfo = json(&agent, &["fsinfo"]);
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let root_type = mountinfo
            .lines()
            .find_map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                let dash = fields.iter().position(|f| *f == "-")?;
                (fields.get(4) == Some(&"/"))
                    .then(|| fields.get(dash + 1).map(|s| s.to_string()))?
            })
            .expect("root in mountinfo");
        let root = fsinfo
            .as_array()
            .expect("array")
            .iter()
            .find(|f| f["mountpoint"] == "/")
            .unwrap_or_else(|| panic!("{kind:?}: no / in {fsinfo}"));
        assert_eq!(root["type"], root_type.as_str(), "{kind:?}");
        let text = ok(&agent, &["fsinfo"]);
        assert!(text.starts_with("MOUNTPOINT  TYPE"), "{kind:?}: {text}");
        let row = text.lines().find(|l| l.starts_with("/ ")).expect("/ row");
        assert!(row.contains(&root_type), "{kind:?}: {row}");

        let disks = json(&agent, &["disks"]);
        assert!(disks.is_array(), "{kind:?}: {disks}");
        let text = ok(&agent, &["disks"]);
        let header: Vec<&str> = text
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        assert_eq!(header[..2], ["NAME", "PARTITION"], "{kind:?}: {text}");
        assert_eq!(
            text.lines().count(),
            disks.as_array().map_or(0, Vec::len) + 1
        );

        assert_eq!(ok(&agent, &["freeze-status"]), "thawed\n", "{kind:?}");
        assert_eq!(json(&agent, &["freeze-status"]), "thawed", "{kind:?}");
    }
}

#[test]
fn freeze_of_nothing_and_disabled_commands() {
    let agent = Agent::start(AgentKind::Porthole, &[]);
    assert_eq!(
        ok(&agent, &["fsfreeze", "--mountpoint", "/nonexistent/mount"]),
        "froze 0 filesystem(s)\n"
    );
    assert_eq!(ok(&agent, &["freeze-status"]), "thawed\n");
    assert_eq!(json(&agent, &["thaw"]), 0);

    for kind in agent_kinds() {
        let agent = Agent::start(
            kind,
            &[
                "-b",
                "guest-fstrim,guest-shutdown,guest-set-time,guest-fsfreeze-freeze",
            ],
        );
        for (args, command) in [
            (&["fstrim", "--minimum", "4096"][..], "guest-fstrim"),
            (&["reboot"], "guest-shutdown"),
            (&["halt"], "guest-shutdown"),
            (&["time", "set", "--now"], "guest-set-time"),
            (&["fsfreeze"], "guest-fsfreeze-freeze"),
        ] {
            let out = porthole(&agent, args);
            assert_eq!(out.status.code(), Some(1), "{kind:?} {args:?}");
            assert!(
                stderr(&out).contains(&format!("{command} has been disabled")),
                "{kind:?} {args:?}: {}",
                stderr(&out)
            );
        }
    }
}

#[test]
fn network_interfaces_and_routes() {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for kind in agent_kinds() {
        let agent = Agent::start(kind, &[]);
        let ifaces = json(&agent, &["ifaddr"]);
        let mut got: Vec<String> = ifaces
            .as_array()
            .expect("array")
            .iter()
            .map(|i| i["name"].as_str().expect("name").to_string())
            .collect();
        got.sort();
        assert_eq!(got, names, "{kind:?}");
        let text = ok(&agent, &["ifaddr"]);
        assert!(
            text.lines().any(|l| l.starts_with("lo ")
                && l.split_whitespace().collect::<Vec<_>>()[2..] == ["ipv4", "127.0.0.1/8"]),
            "{kind:?}: {text}"
        );
    }
    // qemu-ga 7.2 has no guest-network-get-route.
    let agent = Agent::start(AgentKind::Porthole, &[]);
    let routes = json(&agent, &["routes"]);
    let proc_routes = std::fs::read_to_string("/proc/net/route").expect("/proc/net/route");
    let v4 = routes
        .as_array()
        .expect("array")
        .iter()
        .filter(|r| r["version"] == 4)
        .count();
    assert_eq!(v4, proc_routes.lines().count() - 1);
    let text = ok(&agent, &["routes"]);
    assert!(text.starts_with("PROTOCOL  DESTINATION"), "{text}");
    assert_eq!(
        text.lines().count(),
        routes.as_array().map_or(0, Vec::len) + 1
    );
}

#[test]
fn cpus_load_and_telemetry() {
    for kind in agent_kinds() {
        let agent = Agent::start(kind, &[]);
        let vcpus = json(&agent, &["vcpus"]);
        assert_eq!(
            vcpus.as_array().map(Vec::len),
            Some(online_cpus()),
            "{kind:?}"
        );
        assert_eq!(ok(&agent, &["vcpus"]).lines().count(), online_cpus() + 1);
    }
    let agent = Agent::start(AgentKind::Porthole, &[]);
    let load = json(&agent, &["load"]);
    let proc_load = std::fs::read_to_string("/proc/loadavg").expect("loadavg");
    let load15: f64 = proc_load
        .split_whitespace()
        .nth(2)
        .expect("15m")
        .parse()
        .expect("f64");
    let got = load["load15m"].as_f64().expect("load15m");
    assert!((got - load15).abs() < 1.0, "{got} vs {load15}");
    assert!(ok(&agent, &["load"]).starts_with("load average: "));

    let t = json(&agent, &["telemetry"]);
    assert_eq!(t["cpu"]["count"].as_u64(), Some(online_cpus() as u64));
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let total_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("MemTotal");
    assert_eq!(t["memory"]["total-bytes"].as_u64(), Some(total_kib * 1024));
    let text = ok(&agent, &["telemetry"]);
    for needle in [
        "cpus:",
        "memory:",
        "swap:",
        "load:",
        "uptime:",
        "MOUNTPOINT",
        "INTERFACE",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

#[test]
fn processes_and_services() {
    let agent = Agent::start(AgentKind::Porthole, &[]);
    let ps = json(&agent, &["ps", "--max", "65536"]);
    let me = std::process::id();
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    let after_name = stat.rsplit_once(')').expect("comm").1;
    let ppid: u64 = after_name
        .split_whitespace()
        .nth(1)
        .expect("ppid")
        .parse()
        .expect("int");
    let entry = ps["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["pid"] == me)
        .expect("this test in the process list");
    assert_eq!(entry["ppid"], ppid);
    let text = ok(&agent, &["ps", "--max", "3"]);
    assert!(text.starts_with("PID  PPID"), "{text}");
    assert!(
        text.ends_with("(list truncated; ask for more with --max)\n"),
        "{text}"
    );

    let out = porthole(&agent, &["services"]);
    if Path::new("/run/systemd/system").exists() {
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).starts_with("UNIT"));
    } else {
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("systemd is not running"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn extensions_on_qemu_ga_are_explained() {
    let agent = Agent::start(AgentKind::QemuGa, &[]);
    for (args, command) in [
        (&["telemetry"][..], "guest-porthole-telemetry"),
        (&["ps"], "guest-porthole-processes"),
        (&["services"], "guest-porthole-services"),
        (&["time", "sync"], "guest-porthole-time-sync"),
    ] {
        let out = porthole(&agent, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).starts_with(&format!(
                "porthole: {command} is one of porthole-agent's extensions; this agent lacks it"
            )),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn time_subcommands() {
    for kind in agent_kinds() {
        let agent = Agent::start(kind, &[]);
        for args in [&["time"][..], &["time", "get"]] {
            let text = ok(&agent, args);
            assert!(
                text.starts_with("20") && text.ends_with("Z\n"),
                "{kind:?}: {text}"
            );
        }
        let nanos = json(&agent, &["time"]).as_i64().expect("nanoseconds");
        let host = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as i64;
        assert!((host - nanos).abs() < 60_000_000_000, "{kind:?}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_porthole"))
        .args(["agent", "--socket", "/x", "time", "set"])
        .output()
        .expect("porthole");
    assert_eq!(out.status.code(), Some(2), "time set needs --ns or --now");
}

#[test]
fn ssh_keys_and_passwords() {
    for kind in agent_kinds() {
        let user = TempUser::new("k");
        let agent = Agent::start(kind, &[]);
        let (a, b) = (
            "ssh-ed25519 AAAAC3Nza first@host",
            "ssh-ed25519 AAAAC3Nzb second@host",
        );
        ok(&agent, &["ssh-keys", "add", &user.0, a, b]);
        let mut listed: Vec<String> = ok(&agent, &["ssh-keys", "get", &user.0])
            .lines()
            .map(str::to_string)
            .collect();
        listed.sort();
        assert_eq!(listed, [a, b], "{kind:?}");
        let file = format!("/home/{}/.ssh/authorized_keys", user.0);
        // The order and the final newline differ between the agents; the lines do not.
        let mut in_file: Vec<String> = std::fs::read_to_string(&file)
            .expect("keys")
            .lines()
            .map(str::to_string)
            .collect();
        in_file.sort();
        assert_eq!(in_file, [a, b], "{kind:?}");
        ok(&agent, &["ssh-keys", "remove", &user.0, a]);
        let keys = json(&agent, &["ssh-keys", "get", &user.0]);
        assert_eq!(keys["keys"], serde_json::json!([b]), "{kind:?}");

        let before = user.shadow_hash();
        let out = porthole_with_input(&agent, &["set-password", &user.0], b"s3cret pass\n");
        assert!(out.status.success(), "{kind:?}: {}", stderr(&out));
        let after = user.shadow_hash();
        assert!(
            after.starts_with('$') && after != before,
            "{kind:?}: {after}"
        );
        let crypted = "$6$saltsalt$Pq0AKbYcUiCK9DCZaXQ4IXlbBNXnhdv8zLW8QCm3Z0bxrEsUvdpOJ2pZzOQr7JvaW3BYdh7lpBy7mzMnbMa3D.";
        let input = format!("{crypted}\n");
        let out = porthole_with_input(
            &agent,
            &["set-password", "--crypted", &user.0],
            input.as_bytes(),
        );
        assert!(out.status.success(), "{kind:?}: {}", stderr(&out));
        assert_eq!(user.shadow_hash(), crypted, "{kind:?}");

        let out = porthole_with_input(&agent, &["set-password", &user.0], b"");
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("no password on standard input"));
    }
}

#[test]
fn exec_streams_output_before_the_program_exits() {
    let agent = Agent::start(AgentKind::Porthole, &[]);
    let started = Instant::now();
    let mut child = spawn(
        &agent,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "echo first; sleep 6; echo second; exit 5",
        ],
        Stdio::null(),
    );
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("read");
    assert_eq!(first, "first");
    assert!(
        started.elapsed() < Duration::from_millis(5000),
        "{:?}",
        started.elapsed()
    );
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "porthole exited already"
    );
    assert_eq!(lines.next().expect("a line").expect("read"), "second");
    assert_eq!(child.wait().expect("wait").code(), Some(5));

    let out = porthole_with_input(
        &agent,
        &["exec", "--", "tr", "a-z", "A-Z"],
        b"piped through\n",
    );
    assert_eq!(stdout(&out), "PIPED THROUGH\n", "{}", stderr(&out));

    let out = porthole(
        &agent,
        &["exec", "--time-limit", "0.5", "--", "sleep", "30"],
    );
    assert_eq!(out.status.code(), Some(124));
    assert!(
        stderr(&out).contains("killed at its time limit"),
        "{}",
        stderr(&out)
    );
    let value = json(&agent, &["exec", "--", "sh", "-c", "exit 0"]);
    assert_eq!(value["exitcode"], 0);
}

#[test]
fn exec_as_another_user_in_a_directory() {
    let user = TempUser::new("x");
    let agent = Agent::start(AgentKind::Porthole, &[]);
    let out = porthole(
        &agent,
        &[
            "exec",
            "--user",
            &user.0,
            "--cwd",
            "/tmp",
            "--",
            "sh",
            "-c",
            "id -un; pwd; exit 42",
        ],
    );
    assert_eq!(out.status.code(), Some(42), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{}\n/tmp\n", user.0));
    let out = porthole(
        &agent,
        &["exec", "--user", &user.0, "--group", "root", "id", "-gn"],
    );
    assert_eq!(stdout(&out), "root\n", "{}", stderr(&out));
}

#[test]
fn exec_on_qemu_ga_falls_back_or_explains() {
    let agent = Agent::start(AgentKind::QemuGa, &[]);
    let out = porthole(&agent, &["exec", "--", "sh", "-c", "echo plain; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out), "plain\n");
    for option in [
        &["--user", "root"][..],
        &["--cwd", "/"],
        &["--time-limit", "1"],
    ] {
        let mut args = vec!["exec"];
        args.extend_from_slice(option);
        args.extend(["--", "true"]);
        let out = porthole(&agent, &args);
        assert_eq!(out.status.code(), Some(1), "{option:?}");
        assert!(
            stderr(&out).contains(&format!("{} needs guest-porthole-exec", option[0])),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn cp_both_ways_checked_with_sha256sum() {
    for kind in agent_kinds() {
        let agent = Agent::start(kind, &[]);
        let local = agent.path("local.bin");
        std::fs::write(&local, blob(20 << 20)).expect("write");
        let guest = agent.path("guest.bin");
        let guest_arg = format!("guest:{}", guest.display());
        let up = json(&agent, &["cp", local.to_str().expect("utf-8"), &guest_arg]);
        assert_eq!(up["sha256"], sha256sum(&local), "{kind:?}");
        assert_eq!(sha256sum(&guest), sha256sum(&local), "{kind:?}");
        let expected = if kind == AgentKind::Porthole {
            "agent"
        } else {
            "local"
        };
        assert_eq!(up["verified"], expected, "{kind:?}");

        let back = agent.path("back.bin");
        let text = ok(
            &agent,
            &[
                "cp",
                &format!(":{}", guest.display()),
                back.to_str().expect("utf-8"),
            ],
        );
        assert_eq!(sha256sum(&back), sha256sum(&local), "{kind:?}");
        assert!(text.contains(&sha256sum(&local)), "{kind:?}: {text}");
        if kind == AgentKind::QemuGa {
            assert!(text.contains("integrity checked only locally"), "{text}");
        }
    }
}

#[test]
fn cp_resumes_interrupted_transfers() {
    let agent = Agent::start(AgentKind::Porthole, &[]);
    let data = blob(10 << 20);
    let local = agent.path("src.bin");
    std::fs::write(&local, &data).expect("write");
    let guest = agent.path("dst.bin");

    // An upload interrupted after its first 64 KiB, written with the raw command.
    use base64::Engine;
    let first = base64::engine::general_purpose::STANDARD.encode(&data[..65536]);
    let args = format!(
        r#"{{"path": "{}", "offset": 0, "data-b64": "{first}"}}"#,
        guest.display()
    );
    ok(&agent, &["call", "guest-porthole-file-write", &args]);
    assert!(!guest.exists());
    let up = json(
        &agent,
        &[
            "cp",
            "--resume",
            local.to_str().expect("utf-8"),
            &format!("guest:{}", guest.display()),
        ],
    );
    assert_eq!(up["resumed-from"], 65536);
    assert_eq!(sha256sum(&guest), sha256sum(&local));

    // A download interrupted after 5 MiB.
    let back = agent.path("back.bin");
    let partial = agent.path("back.bin.porthole-partial");
    std::fs::write(&partial, &data[..5 << 20]).expect("partial");
    let guest_arg = format!("guest:{}", guest.display());
    let down = json(
        &agent,
        &["cp", "--resume", &guest_arg, back.to_str().expect("utf-8")],
    );
    assert_eq!(down["resumed-from"], 5 << 20);
    assert_eq!(sha256sum(&back), sha256sum(&local));
    assert!(!partial.exists());

    // A partial file that is not the guest file's beginning is caught by the whole-file hash.
    std::fs::write(&partial, vec![0u8; 1 << 20]).expect("partial");
    let out = porthole(
        &agent,
        &["cp", "--resume", &guest_arg, back.to_str().expect("utf-8")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the copy does not match"),
        "{}",
        stderr(&out)
    );

    // A directory as destination receives a file of the source's name.
    let dir = agent.path("dir");
    std::fs::create_dir(&dir).expect("mkdir");
    ok(&agent, &["cp", &guest_arg, dir.to_str().expect("utf-8")]);
    assert_eq!(sha256sum(&dir.join("dst.bin")), sha256sum(&local));
    let guest_dir = format!("guest:{}/", dir.display());
    ok(&agent, &["cp", local.to_str().expect("utf-8"), &guest_dir]);
    assert_eq!(sha256sum(&dir.join("src.bin")), sha256sum(&local));

    // qemu-ga cannot resume, and says so.
    let qga = Agent::start(AgentKind::QemuGa, &[]);
    let out = porthole(
        &qga,
        &["cp", "--resume", &guest_arg, back.to_str().expect("utf-8")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--resume needs porthole-agent"),
        "{}",
        stderr(&out)
    );
}

/// Starts a copy, kills the CLI once `partial` holds at least one chunk, and returns.
fn interrupt_copy(agent: &Agent, args: &[&str], partial: &Path) {
    let mut child = spawn(agent, args, Stdio::null());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let len = std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
        if len >= 8 << 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no partial {}",
            partial.display()
        );
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the copy finished before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kill porthole");
    let _ = child.wait();
}

#[test]
fn cp_resumes_after_the_cli_was_killed() {
    let agent = Agent::start(AgentKind::Porthole, &[]);
    let local = agent.path("big.bin");
    std::fs::write(&local, blob(32 << 20)).expect("write");
    let local_arg = local.to_str().expect("utf-8").to_string();
    let guest = agent.path("copy.bin");
    let guest_arg = format!("guest:{}", guest.display());

    interrupt_copy(
        &agent,
        &["cp", &local_arg, &guest_arg],
        &agent.path(".copy.bin.porthole-partial"),
    );
    assert!(!guest.exists(), "the target appeared before the last chunk");
    let up = json(&agent, &["cp", "--resume", &local_arg, &guest_arg]);
    assert!(up["resumed-from"].as_u64() >= Some(8 << 20), "{up}");
    assert_eq!(sha256sum(&guest), sha256sum(&local));

    let back = agent.path("back.bin");
    let back_arg = back.to_str().expect("utf-8").to_string();
    interrupt_copy(
        &agent,
        &["cp", &guest_arg, &back_arg],
        &agent.path("back.bin.porthole-partial"),
    );
    let down = json(&agent, &["cp", "--resume", &guest_arg, &back_arg]);
    assert!(down["resumed-from"].as_u64() >= Some(8 << 20), "{down}");
    assert_eq!(sha256sum(&back), sha256sum(&local));
}

/// Whether a process whose command line holds `marker` is running.
fn running(marker: &str) -> bool {
    std::fs::read_dir("/proc").expect("/proc").any(|entry| {
        let path = entry.expect("entry").path().join("cmdline");
        std::fs::read(path).is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
    })
}

#[test]
fn exec_kills_the_program_when_the_cli_gives_up() {
    let agent = Agent::start(AgentKind::Porthole, &[]);
    let marker = format!("porthole-marker-{}", std::process::id());
    let script = format!("while :; do echo {marker}; done");
    let mut child = spawn(&agent, &["exec", "--", "sh", "-c", &script], Stdio::null());
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert!(lines
        .next()
        .expect("a line")
        .expect("read")
        .contains(&marker));
    drop(lines);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot write to standard output"),
        "{}",
        stderr(&out)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !running(&script),
        "the guest program survived a closed stdout"
    );

    let script = format!("sleep 30; echo {marker}");
    let out = porthole(
        &agent,
        &["exec", "--max-wait", "0.5", "--", "sh", "-c", &script],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("gave up waiting"), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!running(&script), "the guest program survived --max-wait");
}
