//! porthole's own extensions (`guest-porthole-*`), end to end: a real porthole-agent on a unix
//! socket, real users (useradd), real processes and files, compared with what `id`, `sha256sum`,
//! /proc and `ps` say.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod common;
use common::*;

/// The extensions' own steps on top of the shared client.
trait Extensions {
    fn refused(&mut self, command: &str, arguments: Value) -> Res<String>;
    fn run(&mut self, arguments: Value) -> Res<(Vec<u8>, Vec<u8>, Value, usize)>;
    fn collect(&mut self, handle: &Value) -> Res<(Vec<u8>, Vec<u8>, Value, usize)>;
}

impl Extensions for Client {
    /// The error's `desc`; a success is a test failure.
    fn refused(&mut self, command: &str, arguments: Value) -> Res<String> {
        let reply = self.execute(command, arguments)?;
        match reply["error"]["desc"].as_str() {
            Some(desc) => Ok(desc.to_string()),
            None => Err(format!("{command} should have failed: {reply}").into()),
        }
    }

    /// Starts a program and collects its output chunks until the last; returns (stdout, stderr,
    /// final chunk, chunks that arrived before the exit).
    fn run(&mut self, arguments: Value) -> Res<(Vec<u8>, Vec<u8>, Value, usize)> {
        let handle = self.ok("guest-porthole-exec", arguments)?["handle"].clone();
        self.collect(&handle)
    }

    fn collect(&mut self, handle: &Value) -> Res<(Vec<u8>, Vec<u8>, Value, usize)> {
        let (mut out, mut err, mut early) = (Vec::new(), Vec::new(), 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let chunk = self.ok("guest-porthole-exec-output", json!({"handle": handle}))?;
            let o = b64(&chunk["stdout-b64"]);
            let e = b64(&chunk["stderr-b64"]);
            let exited = chunk["exited"] == json!(true);
            let got_data = !o.is_empty() || !e.is_empty();
            if !exited && got_data {
                early += 1;
            }
            out.extend(o);
            err.extend(e);
            if exited {
                return Ok((out, err, chunk, early));
            }
            if Instant::now() > deadline {
                return Err(format!("exec handle {handle} did not finish").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn b64(value: &Value) -> Vec<u8> {
    BASE64
        .decode(value.as_str().unwrap_or(""))
        .unwrap_or_default()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn tool(program: &str, args: &[&str], package: &str) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} (Debian package {package}): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// useradd/groupadd lock /etc/passwd: one at a time within this binary.
static ACCOUNTS: Mutex<()> = Mutex::new(());

/// A throwaway user in a throwaway supplementary group, removed on drop.
struct User {
    name: String,
    group: String,
    uid: u32,
    gid: u32,
    extra_gid: u32,
}

impl User {
    fn new(tag: &str) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the extension tests run programs as other users: run them as root"
        );
        let name = format!("phx{tag}{}", std::process::id() % 100000);
        let group = format!("{name}g");
        let _guard = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        tool("groupadd", &[&group], "passwd");
        tool(
            "useradd",
            &["-M", "-s", "/bin/false", "-G", &group, &name],
            "passwd",
        );
        let user = nix::unistd::User::from_name(&name)
            .ok()
            .flatten()
            .expect("new user");
        let extra = nix::unistd::Group::from_name(&group)
            .ok()
            .flatten()
            .expect("new group");
        Self {
            name,
            group,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            extra_gid: extra.gid.as_raw(),
        }
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _guard = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let _ = Command::new("userdel").arg(&self.name).output();
        let _ = Command::new("groupdel").arg(&self.group).output();
    }
}

/// `id -u`, `id -g` and `id -G` of a program run through the agent.
fn ids(client: &mut Client, args: Value) -> Res<(u32, u32, Vec<u32>)> {
    let mut request = args;
    request["path"] = json!("/bin/sh");
    request["arg"] = json!(["-c", "id -u; id -g; id -G"]);
    let (out, err, last, _) = client.run(request)?;
    assert_eq!(last["exitcode"], json!(0), "{}", text(&err));
    let out = text(&out);
    let lines: Vec<&str> = out.lines().collect();
    let num = |i: usize| {
        lines
            .get(i)
            .and_then(|l| l.trim().parse::<u32>().ok())
            .unwrap_or(u32::MAX)
    };
    let mut groups: Vec<u32> = lines
        .get(2)
        .map(|l| {
            l.split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    groups.sort_unstable();
    Ok((num(0), num(1), groups))
}

#[test]
fn exec_as_a_user_with_its_groups_or_chosen_ones() -> TestResult {
    let user = User::new("id");
    let agent = Agent::with_config("", &[])?;
    let mut client = agent.connect()?;
    // The user's own groups, as login would set them.
    let (uid, gid, groups) = ids(&mut client, json!({"user": user.name}))?;
    assert_eq!((uid, gid), (user.uid, user.gid));
    let mut expected = vec![user.gid, user.extra_gid];
    expected.sort_unstable();
    assert_eq!(groups, expected);
    // Chosen ones, by name and by number.
    let (uid, gid, groups) = ids(
        &mut client,
        json!({"user": user.uid.to_string(), "group": user.group, "supplementary-groups": ["daemon"]}),
    )?;
    let daemon = nix::unistd::Group::from_name("daemon")?.ok_or("no daemon group")?;
    assert_eq!((uid, gid), (user.uid, user.extra_gid));
    let mut expected = vec![user.extra_gid, daemon.gid.as_raw()];
    expected.sort_unstable();
    assert_eq!(groups, expected);
    // Without a user the agent's own identity is kept.
    let (uid, _, _) = ids(&mut client, json!({}))?;
    assert_eq!(uid, 0);
    Ok(())
}

#[test]
fn cwd_is_entered_as_the_user() -> TestResult {
    let user = User::new("cwd");
    let agent = Agent::with_config("", &[])?;
    let mut client = agent.connect()?;
    let open = agent.path("open");
    std::fs::create_dir(&open)?;
    std::fs::set_permissions(agent.dir(), std::fs::Permissions::from_mode(0o755))?;
    let (out, _, last, _) = client.run(json!({"path": "pwd", "cwd": open, "user": user.name}))?;
    assert_eq!(last["exitcode"], json!(0));
    assert_eq!(text(&out).trim(), open.to_string_lossy());
    // A directory only root may enter is refused to the user (root could enter it).
    let closed = agent.path("closed");
    std::fs::create_dir(&closed)?;
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700))?;
    let desc = client.refused(
        "guest-porthole-exec",
        json!({"path": "pwd", "cwd": closed, "user": user.name}),
    )?;
    assert!(desc.contains("Permission denied"), "{desc}");
    let (out, _, _, _) = client.run(json!({"path": "pwd", "cwd": closed}))?;
    assert_eq!(text(&out).trim(), closed.to_string_lossy());
    Ok(())
}

fn process_gone(pid: u32) -> bool {
    // Gone, or a zombie waiting for an init that does not reap (containers).
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
    }
}

#[test]
fn timeout_kills_the_process_group() -> TestResult {
    let agent = Agent::with_config("", &[])?;
    let mut client = agent.connect()?;
    let started = Instant::now();
    let (out, _, last, _) = client.run(json!({
        "path": "/bin/sh",
        "arg": ["-c", "sleep 60 & echo $!; sleep 60"],
        "timeout-ms": 500,
    }))?;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(last["timed-out"], json!(true));
    assert_eq!(last["signal"], json!(9));
    let grandchild: u32 = text(&out).trim().parse()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !process_gone(grandchild) {
        assert!(
            Instant::now() < deadline,
            "the forked sleep survived the timeout"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, _, last, _) = client.run(json!({"path": "true", "timeout-ms": 10000}))?;
    assert_eq!(last["timed-out"], json!(false));
    assert_eq!(last["exitcode"], json!(0));
    Ok(())
}

#[test]
fn output_streams_while_the_child_runs() -> TestResult {
    let agent = Agent::with_config("", &[])?;
    let mut client = agent.connect()?;
    let script = "for i in 1 2 3 4; do echo line$i; echo err$i >&2; sleep 0.3; done";
    let (out, err, last, early) =
        client.run(json!({"path": "/bin/sh", "arg": ["-c", script], "stream": true}))?;
    assert_eq!(text(&out), "line1\nline2\nline3\nline4\n");
    assert_eq!(text(&err), "err1\nerr2\nerr3\nerr4\n");
    assert!(early >= 2, "only {early} chunks arrived before the exit");
    assert_eq!(last["exitcode"], json!(0));
    // Without `stream` nothing is handed out before the exit, then everything is.
    let (out, _, _, early) = client.run(json!({"path": "/bin/sh", "arg": ["-c", script]}))?;
    assert_eq!(early, 0);
    assert_eq!(text(&out).lines().count(), 4);
    // max-bytes splits the output; the handle is gone after the last chunk.
    let handle = client.ok(
        "guest-porthole-exec",
        json!({"path": "/bin/sh", "arg": ["-c", "printf 0123456789"]}),
    )?["handle"]
        .clone();
    std::thread::sleep(Duration::from_millis(300));
    let mut pieces = Vec::new();
    loop {
        let chunk = client.ok(
            "guest-porthole-exec-output",
            json!({"handle": handle, "max-bytes": 4}),
        )?;
        pieces.push(text(&b64(&chunk["stdout-b64"])));
        if chunk["exited"] == json!(true) {
            break;
        }
        assert!(pieces.len() < 100);
    }
    assert_eq!(pieces.concat(), "0123456789");
    assert!(
        pieces.iter().all(|p| p.len() <= 4) && pieces.len() >= 3,
        "{pieces:?}"
    );
    let desc = client.refused("guest-porthole-exec-output", json!({"handle": handle}))?;
    assert!(desc.contains("not found"), "{desc}");
    Ok(())
}

#[test]
fn kill_and_stdin_after_start() -> TestResult {
    let agent = Agent::with_config("", &[])?;
    let mut client = agent.connect()?;
    let handle = client.ok(
        "guest-porthole-exec",
        json!({"path": "sleep", "arg": ["60"]}),
    )?["handle"]
        .clone();
    client.ok("guest-porthole-exec-kill", json!({"handle": handle}))?;
    let (_, _, last, _) = client.collect(&handle)?;
    assert_eq!(last["signal"], json!(15));
    assert_eq!(last["timed-out"], json!(false));
    let handle = client.ok(
        "guest-porthole-exec",
        json!({"path": "sleep", "arg": ["60"]}),
    )?["handle"]
        .clone();
    client.ok(
        "guest-porthole-exec-kill",
        json!({"handle": handle, "signal": 9}),
    )?;
    assert_eq!(client.collect(&handle)?.2["signal"], json!(9));

    // stdin: the start's input, then two writes, the second closing it.
    let handle = client.ok(
        "guest-porthole-exec",
        json!({"path": "cat", "stream": true, "input-data": BASE64.encode("one ")}),
    )?["handle"]
        .clone();
    for (data, eof) in [("two ", false), ("three", true)] {
        let written = client.ok(
            "guest-porthole-exec-stdin",
            json!({"handle": handle, "data-b64": BASE64.encode(data), "eof": eof}),
        )?;
        assert_eq!(written["written"], json!(data.len()));
    }
    let (out, _, last, _) = client.collect(&handle)?;
    assert_eq!(text(&out), "one two three");
    assert_eq!(last["exitcode"], json!(0));
    // Without `stream`, stdin closes after the input: cat ends by itself.
    let handle = client.ok(
        "guest-porthole-exec",
        json!({"path": "cat", "input-data": BASE64.encode("only")}),
    )?["handle"]
        .clone();
    let (out, _, _, _) = client.collect(&handle)?;
    assert_eq!(text(&out), "only");
    Ok(())
}

#[test]
fn output_cap_truncates_without_blocking() -> TestResult {
    let agent = Agent::with_config("[policy]\nexec-max-output = 1000\n", &[])?;
    let mut client = agent.connect()?;
    let (out, err, last, _) = client.run(json!({
        "path": "/bin/sh",
        "arg": ["-c", "head -c 300000 /dev/zero; echo small >&2"],
    }))?;
    assert_eq!(out.len(), 1000);
    assert_eq!(text(&err), "small\n");
    assert_eq!(last["stdout-truncated"], json!(true));
    assert_eq!(last["stderr-truncated"], json!(false));
    assert_eq!(last["exitcode"], json!(0));
    Ok(())
}

fn sha256sum(path: &Path) -> String {
    let out = tool("sha256sum", &[&path.to_string_lossy()], "coreutils");
    out.split_whitespace().next().unwrap_or("").to_string()
}

/// Deterministic bytes that do not compress into a pattern.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn file_write_resumes_verifies_and_renames() -> TestResult {
    let user = User::new("fw");
    let agent = Agent::with_config("", &[])?;
    let target = agent.path("big.bin");
    let partial = agent.path(".big.bin.porthole-partial");
    let data = pseudo_random(3 << 20, 7);
    let reference = agent.path("reference.bin");
    std::fs::write(&reference, &data)?;
    let sha = sha256sum(&reference);
    let chunk = 1 << 20;
    let send = |client: &mut Client, offset: usize, last: bool| {
        let piece = &data[offset..(offset + chunk).min(data.len())];
        let mut args = json!({"path": target, "offset": offset, "data-b64": BASE64.encode(piece)});
        if last {
            args["final"] =
                json!({"sha256": sha, "mode": 0o640, "owner": user.name, "group": user.group});
        }
        client.ok("guest-porthole-file-write", args)
    };
    // The first chunk, then the connection drops (a host crash mid-transfer).
    {
        let mut client = agent.connect()?;
        assert_eq!(send(&mut client, 0, false)?["received"], json!(chunk));
    }
    assert!(!target.exists());
    let mut client = agent.connect()?;
    let received = client.ok("guest-porthole-file-partial", json!({"path": target}))?["received"]
        .as_u64()
        .ok_or("no received")? as usize;
    assert_eq!(received, chunk);
    // A gap is refused: the host must resume where the guest is.
    let desc = client.refused(
        "guest-porthole-file-write",
        json!({"path": target, "offset": 2 * chunk, "data-b64": "AAAA"}),
    )?;
    assert!(desc.contains("guest-porthole-file-partial"), "{desc}");
    assert_eq!(
        send(&mut client, received, false)?["received"],
        json!(2 * chunk)
    );
    let done = send(&mut client, 2 * chunk, true)?;
    assert_eq!(done, json!({"received": data.len(), "complete": true}));
    assert_eq!(sha256sum(&target), sha);
    let meta = std::fs::metadata(&target)?;
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), (user.uid, user.extra_gid));
    assert!(!partial.exists());
    assert_eq!(
        client.ok("guest-porthole-file-partial", json!({"path": target}))?,
        json!({"received": 0})
    );

    // A wrong checksum: refused, the partial file removed, the target untouched.
    let desc = client.refused(
        "guest-porthole-file-write",
        json!({"path": target, "offset": 0, "data-b64": BASE64.encode("other"),
               "final": {"sha256": "0".repeat(64)}}),
    )?;
    assert!(desc.contains("sha256 mismatch"), "{desc}");
    assert_eq!(sha256sum(&target), sha);
    assert!(!partial.exists());
    Ok(())
}

#[test]
fn file_read_in_chunks_matches_sha256sum() -> TestResult {
    let agent = Agent::with_config("", &[])?;
    let mut client = agent.connect()?;
    let path = agent.path("read.bin");
    let data = pseudo_random((5 << 20) + 123, 11);
    std::fs::write(&path, &data)?;
    let expected = sha256sum(&path);
    let whole = client.ok("guest-porthole-file-sha256", json!({"path": path}))?;
    assert_eq!(whole, json!({"sha256": expected, "size": data.len()}));
    let mut got = Vec::new();
    loop {
        let chunk = client.ok(
            "guest-porthole-file-read",
            json!({"path": path, "offset": got.len(), "length": 2 << 20}),
        )?;
        let bytes = b64(&chunk["data-b64"]);
        assert_eq!(chunk["length"], json!(bytes.len()));
        assert_eq!(chunk["size"], json!(data.len()));
        let piece = agent.path("piece");
        std::fs::write(&piece, &bytes)?;
        assert_eq!(chunk["sha256-of-chunk"], json!(sha256sum(&piece)));
        got.extend(bytes);
        if chunk["eof"] == json!(true) {
            break;
        }
    }
    assert_eq!(got.len(), data.len());
    std::fs::write(agent.path("copy"), &got)?;
    assert_eq!(sha256sum(&agent.path("copy")), expected);
    // The default length is 8 MiB: the whole file in one chunk.
    let chunk = client.ok("guest-porthole-file-read", json!({"path": path}))?;
    assert_eq!(chunk["length"], json!(data.len()));
    Ok(())
}

#[test]
fn telemetry_agrees_with_proc() -> TestResult {
    let agent = Agent::with_config("", &[])?;
    let mut client = agent.connect()?;
    let before: f64 = std::fs::read_to_string("/proc/uptime")?
        .split_whitespace()
        .next()
        .ok_or("uptime")?
        .parse()?;
    let t = client.ok("guest-porthole-telemetry", json!({}))?;
    let stat = std::fs::read_to_string("/proc/stat")?;
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    assert_eq!(t["cpu"]["count"], json!(cpus));
    assert_eq!(
        t["cpu"]["per-cpu-jiffies"].as_array().map(Vec::len),
        Some(cpus)
    );
    assert!(t["cpu"]["total-jiffies"]["idle"].as_u64().ok_or("idle")? > 0);
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let kib = |key: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(u64::MAX)
            * 1024
    };
    let mem = &t["memory"];
    assert_eq!(mem["total-bytes"], json!(kib("MemTotal")));
    assert_eq!(
        mem["used-bytes"].as_u64(),
        Some(kib("MemTotal") - mem["available-bytes"].as_u64().ok_or("available")?)
    );
    assert_eq!(t["swap"]["total-bytes"], json!(kib("SwapTotal")));
    let after: f64 = std::fs::read_to_string("/proc/uptime")?
        .split_whitespace()
        .next()
        .ok_or("uptime")?
        .parse()?;
    let uptime = t["uptime-seconds"].as_f64().ok_or("uptime-seconds")?;
    assert!(
        (before..=after).contains(&uptime),
        "{before} {uptime} {after}"
    );
    assert!(t["load"]["1m"].as_f64().is_some());
    let interfaces = t["interfaces"].as_array().ok_or("interfaces")?;
    assert!(
        interfaces.iter().any(|i| i["name"] == json!("lo")),
        "{interfaces:?}"
    );
    for fs in t["filesystems"].as_array().ok_or("filesystems")? {
        let total = fs["total-bytes"].as_u64().ok_or("total")?;
        assert!(fs["used-bytes"].as_u64().ok_or("used")? <= total, "{fs}");
        assert!(fs["mountpoint"]
            .as_str()
            .is_some_and(|m| m.starts_with('/')));
    }
    Ok(())
}

#[test]
fn processes_include_the_agent_and_services_need_systemd() -> TestResult {
    let agent = Agent::with_config("", &[])?;
    let mut client = agent.connect()?;
    let list = client.ok("guest-porthole-processes", json!({}))?;
    let processes = list["processes"].as_array().ok_or("processes")?;
    let me = processes
        .iter()
        .find(|p| p["pid"] == json!(agent.child.id()))
        .ok_or("the agent is not listed")?;
    assert_eq!(me["ppid"], json!(std::process::id()));
    assert_eq!(me["user"], json!("root"));
    assert!(
        me["command-line"]
            .as_str()
            .is_some_and(|c| c.contains("porthole-agent")),
        "{me}"
    );
    assert!(me["rss-bytes"].as_u64().is_some_and(|r| r > 0), "{me}");
    let ps = tool(
        "ps",
        &["-o", "ppid=,stat=", "-p", &agent.child.id().to_string()],
        "procps",
    );
    let ps_state = ps.split_whitespace().nth(1).unwrap_or("").chars().next();
    assert_eq!(
        me["state"].as_str().and_then(|s| s.chars().next()),
        ps_state
    );
    let two = client.ok("guest-porthole-processes", json!({"max": 2}))?;
    assert_eq!(two["processes"].as_array().map(Vec::len), Some(2));
    assert_eq!(two["truncated"], json!(true));

    let init = tool("ps", &["-p", "1", "-o", "comm="], "procps");
    let services = client.execute("guest-porthole-services", json!({}))?;
    let status = client.execute(
        "guest-porthole-service-status",
        json!({"name": "ssh.service"}),
    )?;
    if init.trim() == "systemd" {
        assert!(services["return"]["units"]
            .as_array()
            .is_some_and(|u| !u.is_empty()));
        assert!(status.get("return").is_some() || status.get("error").is_some());
    } else {
        for reply in [services, status] {
            let desc = reply["error"]["desc"].as_str().unwrap_or("");
            assert!(desc.starts_with("systemd is not running"), "{reply}");
        }
    }
    Ok(())
}

#[test]
fn time_sync_reports_its_method() -> TestResult {
    let agent = Agent::with_config("", &[])?;
    let mut client = agent.connect()?;
    let found = |p: &str| {
        ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(p).exists())
    };
    let reply = client.execute("guest-porthole-time-sync", json!({}))?;
    let systemd = Path::new("/run/systemd/system").is_dir();
    if !found("chronyc") && !found("ntpd") && !systemd {
        assert_eq!(
            reply["error"]["desc"],
            json!("no time service found (chrony, systemd-timesyncd, ntpd)")
        );
    } else {
        let method = reply["return"]["method"]
            .as_str()
            .or(reply["error"]["desc"].as_str());
        assert!(method.is_some(), "{reply}");
    }
    // With a time: the clock is stepped (to now, harmlessly) as guest-set-time does; the RTC
    // part fails where there is none (containers), with guest-set-time's hwclock error.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let reply = client.execute(
        "guest-porthole-time-sync",
        json!({"time-ns": now.as_nanos() as i64}),
    )?;
    match reply.get("return") {
        Some(r) => assert_eq!(r, &json!({"method": "clock_settime"})),
        None => {
            let desc = reply["error"]["desc"].as_str().unwrap_or("");
            assert!(desc.contains("hwclock"), "{reply}");
        }
    }
    Ok(())
}

#[test]
fn policy_rules_gate_the_extensions() -> TestResult {
    let user = User::new("pol");
    let toml = format!(
        "[policy]\nexec-programs = [\"id\", \"/bin/sh\"]\nexec-users = [\"{}\"]\n\
         read-prefixes = [\"$D/in\"]\nwrite-prefixes = [\"$D/in\"]\naudit-log = \"$D/audit.log\"\n",
        user.name
    );
    let agent = Agent::with_config(&toml, &[])?;
    std::fs::create_dir(agent.path("in"))?;
    let mut client = agent.connect()?;
    let desc = client.refused(
        "guest-porthole-exec",
        json!({"path": "cat", "user": user.name}),
    )?;
    assert!(desc.contains("(policy: exec-programs)"), "{desc}");
    let desc = client.refused("guest-porthole-exec", json!({"path": "id", "user": "root"}))?;
    assert!(desc.contains("(policy: exec-users)"), "{desc}");
    // Without a user the child would run as the agent's (root): the same rule applies.
    let desc = client.refused("guest-porthole-exec", json!({"path": "id"}))?;
    assert!(
        desc.contains("running as user 'root' is not allowed (policy: exec-users)"),
        "{desc}"
    );
    let (out, _, _, _) = client.run(json!({"path": "id", "arg": ["-u"], "user": user.name}))?;
    assert_eq!(text(&out).trim(), user.uid.to_string());
    let desc = client.refused("guest-porthole-file-read", json!({"path": "/etc/passwd"}))?;
    assert!(desc.contains("(policy: read-prefixes)"), "{desc}");
    let desc = client.refused("guest-porthole-file-sha256", json!({"path": "/etc/passwd"}))?;
    assert!(desc.contains("(policy: read-prefixes)"), "{desc}");
    let outside = agent.path("out.txt");
    let desc = client.refused(
        "guest-porthole-file-write",
        json!({"path": outside, "offset": 0, "data-b64": "eA=="}),
    )?;
    assert!(desc.contains("(policy: write-prefixes)"), "{desc}");
    assert!(!outside.exists());
    let desc = client.refused("guest-porthole-file-partial", json!({"path": outside}))?;
    assert!(desc.contains("(policy: write-prefixes)"), "{desc}");
    let inside = agent.path("in/ok.txt");
    let sha = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"; // "x"
    client.ok(
        "guest-porthole-file-write",
        json!({"path": inside, "offset": 0, "data-b64": "eA==", "final": {"sha256": sha}}),
    )?;
    assert_eq!(std::fs::read(&inside)?, b"x");
    // Every extension is listed; the audit log has the state-changing ones only.
    let info = client.ok("guest-info", json!({}))?;
    let listed: Vec<&str> = info["supported_commands"]
        .as_array()
        .ok_or("no list")?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .filter(|n| n.starts_with("guest-porthole-"))
        .collect();
    assert_eq!(listed.len(), 13, "{listed:?}");
    client.ok("guest-porthole-telemetry", json!({}))?;
    let audit = std::fs::read_to_string(agent.path("audit.log"))?;
    assert!(audit.contains("command=guest-porthole-exec "), "{audit}");
    assert!(
        audit.contains("command=guest-porthole-file-write "),
        "{audit}"
    );
    assert!(audit.contains("data-b64=<4 bytes>"), "{audit}");
    assert!(!audit.contains("guest-porthole-telemetry"), "{audit}");
    assert!(!audit.contains("guest-porthole-file-read"), "{audit}");
    Ok(())
}

#[test]
fn hostile_arguments_get_clear_errors() -> TestResult {
    let agent = Agent::with_config("", &[])?;
    let mut client = agent.connect()?;
    let file = agent.path("f.txt");
    std::fs::write(&file, "hello")?;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "guest-porthole-file-read",
            json!({"path": file, "offset": -1}),
            "offset",
        ),
        (
            "guest-porthole-file-read",
            json!({"path": file, "length": -5}),
            "length",
        ),
        (
            "guest-porthole-file-read",
            json!({"path": file, "length": i64::MAX}),
            "file-max-read",
        ),
        (
            "guest-porthole-file-write",
            json!({"path": file, "offset": -1, "data-b64": ""}),
            "offset",
        ),
        (
            "guest-porthole-file-write",
            json!({"path": file, "offset": i64::MAX, "data-b64": "eA=="}),
            "guest-porthole-file-partial",
        ),
        (
            "guest-porthole-file-write",
            json!({"path": file, "offset": 0, "data-b64": "!!notbase64"}),
            "Base64",
        ),
        (
            "guest-porthole-file-write",
            json!({"path": file, "offset": 0, "data-b64": "", "final": {"sha256": "xyz"}}),
            "sha256",
        ),
        (
            "guest-porthole-file-write",
            json!({"path": file, "offset": 0, "data-b64": "", "final": {"sha256": "0", "extra": 1}}),
            "extra",
        ),
        (
            "guest-porthole-file-write",
            json!({"path": "/", "offset": 0, "data-b64": ""}),
            "does not name a file",
        ),
        (
            "guest-porthole-file-read",
            json!({"path": agent.path("missing")}),
            "No such file",
        ),
        (
            "guest-porthole-exec",
            json!({"path": "true", "user": "no-such-user-porthole"}),
            "unknown user",
        ),
        (
            "guest-porthole-exec",
            json!({"path": "true", "group": "no-such-group-porthole"}),
            "unknown group",
        ),
        (
            "guest-porthole-exec",
            json!({"path": "true", "timeout-ms": 0}),
            "timeout-ms",
        ),
        (
            "guest-porthole-exec",
            json!({"path": "true", "input-data": "%%%"}),
            "Base64",
        ),
        (
            "guest-porthole-exec",
            json!({"path": "/no/such/program"}),
            "No such file",
        ),
        (
            "guest-porthole-exec-output",
            json!({"handle": 999999}),
            "not found",
        ),
        (
            "guest-porthole-exec-kill",
            json!({"handle": -1}),
            "not found",
        ),
        (
            "guest-porthole-exec-stdin",
            json!({"handle": 424242, "data-b64": ""}),
            "not found",
        ),
        ("guest-porthole-processes", json!({"max": 0}), "max"),
        (
            "guest-porthole-service-status",
            json!({"name": "--help"}),
            "name",
        ),
    ];
    for (command, args, expect) in cases {
        let desc = client.refused(command, args.clone())?;
        assert!(desc.contains(expect), "{command} {args}: {desc}");
    }
    let handle = client.ok(
        "guest-porthole-exec",
        json!({"path": "sleep", "arg": ["30"]}),
    )?["handle"]
        .clone();
    for (args, expect) in [
        (json!({"handle": handle, "signal": 999}), "signal"),
        (json!({"handle": handle, "signal": -9}), "signal"),
    ] {
        let desc = client.refused("guest-porthole-exec-kill", args)?;
        assert!(desc.contains(expect), "{desc}");
    }
    for max in [0, -1, i64::MAX] {
        let desc = client.refused(
            "guest-porthole-exec-output",
            json!({"handle": handle, "max-bytes": max}),
        )?;
        assert!(desc.contains("max-bytes"), "{desc}");
    }
    let desc = client.refused(
        "guest-porthole-exec-stdin",
        json!({"handle": handle, "data-b64": "eA=="}),
    )?;
    assert!(desc.contains("is closed"), "{desc}");
    client.ok(
        "guest-porthole-exec-kill",
        json!({"handle": handle, "signal": 9}),
    )?;
    // A huge offset past the end reads nothing, at the end.
    let chunk = client.ok(
        "guest-porthole-file-read",
        json!({"path": file, "offset": i64::MAX}),
    )?;
    assert_eq!(
        (chunk["length"].clone(), chunk["eof"].clone()),
        (json!(0), json!(true))
    );
    assert_eq!(std::fs::read(&file)?, b"hello", "the target was touched");
    client.ok("guest-ping", json!({}))?;
    Ok(())
}

#[test]
fn runaway_children_never_block_the_agent() -> TestResult {
    let agent = Agent::with_config("[policy]\nexec-max-output = 65536\n", &[])?;
    let mut client = agent.connect()?;
    // A child that exits while its background grandchild holds the pipes is reported anyway.
    let started = Instant::now();
    let (out, _, last, _) = client.run(json!({
        "path": "/bin/sh",
        "arg": ["-c", "echo before; sleep 30 & exit 3"],
    }))?;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(text(&out), "before\n");
    assert_eq!(last["exitcode"], json!(3));
    // An endless writer: the agent keeps answering while it runs, and the cap holds.
    let handle = client.ok(
        "guest-porthole-exec",
        json!({"path": "yes", "stream": true, "timeout-ms": 1500}),
    )?["handle"]
        .clone();
    let mut other = agent.connect()?;
    for _ in 0..10 {
        let t = Instant::now();
        other.ok("guest-ping", json!({}))?;
        assert!(t.elapsed() < Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(50));
    }
    let (out, _, last, _) = client.collect(&handle)?;
    assert!(!out.is_empty());
    assert_eq!(last["timed-out"], json!(true));
    assert_eq!(last["stdout-truncated"], json!(true));
    Ok(())
}

#[test]
fn live_handles_are_bounded_and_freed_by_the_last_chunk() -> TestResult {
    let agent = Agent::with_config("", &[])?;
    let mut client = agent.connect()?;
    let mut handles = Vec::new();
    for _ in 0..256 {
        let started = client.ok(
            "guest-porthole-exec",
            json!({"path": "sleep", "arg": ["60"]}),
        )?;
        handles.push(started["handle"].clone());
    }
    let desc = client.refused("guest-porthole-exec", json!({"path": "true"}))?;
    assert!(desc.contains("limit 256"), "{desc}");
    for handle in &handles {
        client.ok(
            "guest-porthole-exec-kill",
            json!({"handle": handle, "signal": 9}),
        )?;
    }
    for handle in &handles {
        assert_eq!(client.collect(handle)?.2["signal"], json!(9));
    }
    let (_, _, last, _) = client.run(json!({"path": "true"}))?;
    assert_eq!(last["exitcode"], json!(0));
    Ok(())
}

#[test]
fn hardened_profile_and_json_rpc() -> TestResult {
    let agent = Agent::with_config("profile = \"hardened\"\n", &[])?;
    let mut client = agent.connect()?;
    let desc = client.refused("guest-porthole-exec", json!({"path": "true"}))?;
    assert!(desc.contains("(policy: exec-programs)"), "{desc}");
    let desc = client.refused(
        "guest-porthole-file-write",
        json!({"path": "/etc/porthole-test", "offset": 0, "data-b64": ""}),
    )?;
    assert!(desc.contains("(policy: write-prefixes)"), "{desc}");
    // The same commands in the JSON-RPC dialect, with its codes.
    let request = json!({"jsonrpc": "2.0", "id": 7, "method": "guest-porthole-telemetry"});
    let reply = client.call(&request)?;
    assert_eq!(reply["id"], json!(7));
    assert!(
        reply["result"]["memory"]["total-bytes"]
            .as_u64()
            .is_some_and(|t| t > 0),
        "{reply}"
    );
    let request = json!({"jsonrpc": "2.0", "id": 8, "method": "guest-porthole-file-read",
                         "params": {"path": "/etc/shadow"}});
    let reply = client.call(&request)?;
    assert_eq!(reply["error"]["code"], json!(-32001), "{reply}");
    Ok(())
}
