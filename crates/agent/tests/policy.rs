//! The security policy, end to end: a real porthole-agent on a unix socket, real files, real
//! processes. Every rule is exercised through the wire (QGA and JSON-RPC), and the path resolver
//! also directly, racing a directory/symlink swap.

use porthole_agent::policy::paths::{OpenError, Prefixes, Strategy};
use serde_json::{json, Value};
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;
use common::*;

/// guest-file-open of `path` in `mode`: the whole reply.
fn open(client: &mut Client, path: &Path, mode: &str) -> Res<Value> {
    client.execute(
        "guest-file-open",
        json!({"path": path.to_string_lossy(), "mode": mode}),
    )
}

fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(data: &Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(data.as_str().unwrap_or(""))
        .unwrap_or_default()
}

fn desc(reply: &Value) -> String {
    reply["error"]["desc"].as_str().unwrap_or("").to_string()
}

/// A tree with an allowed read dir, an allowed write dir, a secret outside both, and symlinks
/// that try to escape.
fn tree(root: &Path) -> Res<(PathBuf, PathBuf, PathBuf)> {
    let read = root.join("pub");
    let write = root.join("spool");
    std::fs::create_dir_all(read.join("sub"))?;
    std::fs::create_dir_all(&write)?;
    std::fs::write(read.join("sub/file"), "public")?;
    let secret = root.join("secret");
    std::fs::write(&secret, "TOPSECRET")?;
    symlink("../secret", read.join("escape"))?;
    symlink(&secret, read.join("absolute-escape"))?;
    symlink("sub/file", read.join("inside"))?;
    symlink(&secret, write.join("planted"))?;
    Ok((read, write, secret))
}

const PREFIXES: &str = r#"
[policy]
read-prefixes = ["$D/pub", "$D/spool"]
write-prefixes = ["$D/spool"]
"#;

#[test]
fn read_and_write_prefixes_hold_against_dotdot_and_symlinks() -> TestResult {
    for resolver in ["auto", "walk"] {
        let agent =
            Agent::with_config(&format!("{PREFIXES}path-resolver = \"{resolver}\"\n"), &[])?;
        let (read, write, secret) = tree(agent.dir())?;
        let mut c = agent.connect()?;
        // Allowed reads, through `..` and a symlink that stay inside.
        for ok in ["sub/file", "inside", "sub/../sub/file"] {
            let reply = open(&mut c, &read.join(ok), "r")?;
            let handle = reply["return"].clone();
            assert!(handle.is_i64(), "{resolver} {ok}: {reply}");
            let data = c.execute("guest-file-read", json!({"handle": handle}))?;
            assert_eq!(unb64(&data["return"]["buf-b64"]), b"public");
        }
        // Escapes: `..`, a relative and an absolute symlink out, a path outside every prefix.
        for (bad, rule) in [
            (read.join("../secret"), "read-prefixes"),
            (read.join("sub/../../secret"), "read-prefixes"),
            (read.join("escape"), "read-prefixes"),
            (read.join("absolute-escape"), "read-prefixes"),
            (secret.clone(), "read-prefixes"),
        ] {
            let reply = open(&mut c, &bad, "r")?;
            assert_eq!(reply["error"]["class"], "GenericError", "{reply}");
            assert!(
                desc(&reply).contains(&format!("(policy: {rule})")),
                "{reply}"
            );
            assert!(desc(&reply).starts_with("failed to open file '"), "{reply}");
        }
        // Writes only under the write prefix, and a planted symlink cannot redirect them.
        let reply = open(&mut c, &read.join("new"), "w")?;
        assert!(desc(&reply).contains("(policy: write-prefixes)"), "{reply}");
        let reply = open(&mut c, &read.join("sub/file"), "r+")?;
        assert!(desc(&reply).contains("(policy: write-prefixes)"), "{reply}");
        let reply = open(&mut c, &write.join("planted"), "w")?;
        assert!(desc(&reply).contains("(policy: write-prefixes)"), "{reply}");
        assert_eq!(std::fs::read_to_string(&secret)?, "TOPSECRET");
        for mode in ["w", "a", "w+"] {
            let reply = open(&mut c, &write.join("out.txt"), mode)?;
            let handle = reply["return"].clone();
            assert!(handle.is_i64(), "{mode}: {reply}");
            c.execute(
                "guest-file-write",
                json!({"handle": handle, "buf-b64": b64(b"x")}),
            )?;
            c.execute("guest-file-close", json!({"handle": handle}))?;
        }
        assert_eq!(std::fs::read_to_string(write.join("out.txt"))?, "x");
        // A relative path is refused while prefixes are restricted.
        let reply = open(&mut c, Path::new("pub/sub/file"), "r")?;
        assert!(desc(&reply).contains("relative path"), "{reply}");
        // The refusals were counted.
        let info = c.rpc("get_agent_info", json!({}))?;
        assert!(
            info["result"]["policy_refusals"].as_u64() >= Some(9),
            "{info}"
        );
    }
    Ok(())
}

/// A directory swapped with a symlink to the outside while opens run: no open ever returns the
/// outside file, with either resolver.
#[test]
fn a_directory_swapped_for_a_symlink_during_opens_never_escapes() -> TestResult {
    let root = tempfile::tempdir()?;
    let allowed = root.path().join("allowed");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(allowed.join("real"))?;
    std::fs::create_dir_all(&outside)?;
    std::fs::write(allowed.join("real/data"), "inside")?;
    std::fs::write(outside.join("data"), "outside")?;
    symlink("real", allowed.join("d"))?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (allowed, outside, stop) = (allowed.clone(), outside.clone(), stop.clone());
        std::thread::spawn(move || -> std::io::Result<u64> {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Atomically point `d` at the real dir (relative) or outside (absolute).
                let tmp = allowed.join("d.tmp");
                let _ = std::fs::remove_file(&tmp);
                if swaps.is_multiple_of(2) {
                    symlink(&outside, &tmp)?;
                } else {
                    symlink("real", &tmp)?;
                }
                std::fs::rename(&tmp, allowed.join("d"))?;
                swaps += 1;
            }
            Ok(swaps)
        })
    };
    let prefixes = Prefixes::new(std::slice::from_ref(&allowed));
    let path = allowed.join("d/data").to_string_lossy().into_owned();
    let (mut inside, mut refused) = (0, 0);
    for strategy in [Strategy::Auto, Strategy::Walk] {
        for _ in 0..3000 {
            let flags = nix::fcntl::OFlag::O_RDONLY;
            match prefixes.open(&path, flags, nix::sys::stat::Mode::empty(), strategy, "t") {
                Ok(mut file) => {
                    let mut text = String::new();
                    file.read_to_string(&mut text)?;
                    assert_eq!(text, "inside", "{strategy:?} escaped");
                    inside += 1;
                }
                Err(OpenError::Outside(_)) => refused += 1,
                Err(OpenError::Io(e)) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(format!("{strategy:?}: {e}").into()),
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().map_err(|_| "swapper panicked")??;
    eprintln!("{swaps} swaps; {inside} opens inside, {refused} refused, none outside");
    assert!(swaps > 10, "the swap raced too little ({swaps})");
    assert!(
        inside > 0 && refused > 0,
        "inside {inside}, refused {refused}"
    );
    Ok(())
}

#[test]
fn exec_allow_list_timeout_and_output_caps() -> TestResult {
    let agent = Agent::with_config(
        r#"
        [policy]
        exec-programs = ["echo", "sleep", "head"]
        exec-max-timeout = 1
        exec-max-output = 1000
        "#,
        &[],
    )?;
    let mut c = agent.connect()?;
    let ok = c.exec_wait(json!({"path": "echo", "arg": ["hi"], "capture-output": true}))?;
    assert_eq!(unb64(&ok["out-data"]), b"hi\n");
    let refused = c.execute(
        "guest-exec",
        json!({"path": "/bin/sh", "arg": ["-c", "true"]}),
    )?;
    assert_eq!(refused["error"]["class"], "GenericError");
    assert!(
        desc(&refused).contains("(policy: exec-programs)"),
        "{refused}"
    );
    // A PATH in the request that finds another `echo` is checked as that other program.
    let fake = agent.path("bin");
    std::fs::create_dir_all(&fake)?;
    std::fs::write(fake.join("echo"), "#!/bin/sh\necho pwned\n")?;
    std::process::Command::new("chmod")
        .arg("755")
        .arg(fake.join("echo"))
        .status()?;
    let env = format!("PATH={}", fake.display());
    let redirected = c.execute("guest-exec", json!({"path": "echo", "env": [env]}))?;
    assert!(desc(&redirected).contains("not allowed"), "{redirected}");
    // Killed at the policy's maximum run time.
    let started = Instant::now();
    let slept = c.exec_wait(json!({"path": "sleep", "arg": ["30"]}))?;
    assert_eq!(slept["signal"], json!(9), "{slept}");
    assert!(started.elapsed() < Duration::from_secs(20));
    // Output capped at exec-max-output and flagged.
    let big = c.exec_wait(
        json!({"path": "head", "arg": ["-c", "5000", "/dev/zero"], "capture-output": true}),
    )?;
    assert_eq!(unb64(&big["out-data"]).len(), 1000);
    assert_eq!(big["out-truncated"], json!(true));
    // exec_command: over the maximum timeout is a refusal; running past its timeout, -32003.
    let over = c.rpc(
        "exec_command",
        json!({"command": "sleep", "args": ["0"], "timeout_seconds": 5}),
    )?;
    assert_eq!(over["error"]["code"], json!(-32001), "{over}");
    assert!(over["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("exec-max-timeout"));
    let late = c.rpc(
        "exec_command",
        json!({"command": "sleep", "args": ["10"], "timeout_seconds": 1}),
    )?;
    assert_eq!(late["error"]["code"], json!(-32003), "{late}");
    let denied = c.rpc("exec_command", json!({"command": "id"}))?;
    assert_eq!(denied["error"]["code"], json!(-32001), "{denied}");
    Ok(())
}

#[test]
fn message_cap_refuses_large_requests_and_keeps_serving() -> TestResult {
    let agent = Agent::with_config("[policy]\nmax-message = 65536\n", &[])?;
    let mut c = agent.connect()?;
    let filler = "x".repeat(70 << 10);
    let big = c.execute("guest-ping", json!({ "pad": filler }))?;
    assert!(
        desc(&big).contains("exceeds the limit of 65536 bytes"),
        "{big}"
    );
    let small = c.execute("guest-ping", json!({ "pad": "x".repeat(60 << 10) }))?;
    assert!(
        desc(&small).contains("unexpected"),
        "a 60 KiB request is parsed: {small}"
    );
    assert_eq!(c.execute("guest-ping", json!({}))?, json!({"return": {}}));
    // Below 4 KiB is a configuration error: the agent does not start.
    assert!(Agent::with_config("[policy]\nmax-message = 100\n", &[]).is_err());
    Ok(())
}

#[test]
fn file_size_caps() -> TestResult {
    let agent = Agent::with_config(
        "[policy]\nfile-max-read = 100\nfile-max-write = 50\nfile-max-size = 80\n",
        &[],
    )?;
    let mut c = agent.connect()?;
    let path = agent.path("f");
    std::fs::write(&path, vec![b'a'; 300])?;
    let h = open(&mut c, &path, "r+")?["return"].clone();
    let read = c.execute("guest-file-read", json!({"handle": h, "count": 101}))?;
    assert!(desc(&read).contains("(policy: file-max-read)"), "{read}");
    let read = c.execute("guest-file-read", json!({"handle": h, "count": 100}))?;
    assert_eq!(read["return"]["count"], json!(100));
    let big = c.execute(
        "guest-file-write",
        json!({"handle": h, "buf-b64": b64(&[1; 51])}),
    )?;
    assert!(desc(&big).contains("(policy: file-max-write)"), "{big}");
    // At offset 100, even one byte would make the file bigger than 80 bytes... here the file
    // already is; a fresh file grows to the cap and no further.
    let h2 = open(&mut c, &agent.path("g"), "w")?["return"].clone();
    let ok = c.execute(
        "guest-file-write",
        json!({"handle": h2, "buf-b64": b64(&[1; 50])}),
    )?;
    assert_eq!(ok["return"]["count"], json!(50), "{ok}");
    let grow = c.execute(
        "guest-file-write",
        json!({"handle": h2, "buf-b64": b64(&[1; 31])}),
    )?;
    assert!(desc(&grow).contains("(policy: file-max-size)"), "{grow}");
    assert_eq!(std::fs::metadata(agent.path("g"))?.len(), 50);
    Ok(())
}

#[test]
fn audit_lines_for_state_changes_with_the_peer_identity() -> TestResult {
    let agent = Agent::with_config("[policy]\naudit-log = \"$D/audit.log\"\n", &[])?;
    let log = agent.path("audit.log");
    let mut c = agent.connect()?;
    // Reads: no audit line.
    c.execute("guest-get-osinfo", json!({}))?;
    let target = agent.path("written");
    std::fs::write(&target, "old")?;
    let h = open(&mut c, &target, "r")?["return"].clone();
    c.execute("guest-file-read", json!({"handle": h}))?;
    c.execute("guest-file-close", json!({"handle": h}))?;
    c.rpc("file_read", json!({"path": target.to_string_lossy()}))?;
    assert!(!log.exists() || std::fs::read_to_string(&log)?.is_empty());
    // State changes: one line each, contents never logged.
    let h = open(&mut c, &target, "w")?["return"].clone();
    c.execute(
        "guest-file-write",
        json!({"handle": h, "buf-b64": b64(b"SECRETDATA")}),
    )?;
    c.exec_wait(json!({"path": "true", "arg": ["--password=hunter2"]}))?;
    c.rpc(
        "file_write",
        json!({"path": agent.path("rpc").to_string_lossy(), "content": "PLAINSECRET"}),
    )?;
    let text = std::fs::read_to_string(&log)?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for (line, command) in lines.iter().zip([
        "guest-file-open",
        "guest-file-write",
        "guest-exec",
        "file_write",
    ]) {
        assert!(line.contains(&format!("command={command} ")), "{line}");
        assert!(line.contains("result=ok"), "{line}");
        let me = format!("uid={} ", nix::unistd::getuid());
        assert!(
            line.contains(&me) && line.contains(&format!("pid={}", std::process::id())),
            "{line}"
        );
        assert!(line.contains("unix-listen"), "{line}");
    }
    for secret in ["SECRETDATA", &b64(b"SECRETDATA"), "hunter2", "PLAINSECRET"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert!(lines[1].contains("buf-b64=<16 bytes>"), "{}", lines[1]);
    // Refusals of state-changing commands are audited too, with their class.
    drop(c);
    let agent = Agent::with_config(
        "[policy]\naudit-log = \"$D/audit.log\"\n",
        &["-b", "guest-exec"],
    )?;
    let mut c = agent.connect()?;
    c.execute("guest-exec", json!({"path": "true"}))?;
    let text = std::fs::read_to_string(agent.path("audit.log"))?;
    assert!(
        text.contains("command=guest-exec ") && text.contains("result=error:disabled"),
        "{text}"
    );
    Ok(())
}

#[test]
fn audit_lines_wait_while_frozen() -> TestResult {
    let agent = Agent::with_config("[policy]\naudit-log = \"$D/audit.log\"\n", &[])?;
    let marker = agent.path("state/porthole-agent.frozen");
    std::fs::write(&marker, "")?;
    let mut c = agent.connect()?;
    open(&mut c, &agent.path("while-frozen"), "w")?;
    assert!(!agent.path("audit.log").exists(), "written while frozen");
    std::fs::remove_file(&marker)?;
    c.execute("guest-exec", json!({"path": "true"}))?;
    let text = std::fs::read_to_string(agent.path("audit.log"))?;
    let commands: Vec<&str> = text.lines().filter_map(|l| l.split(' ').nth(1)).collect();
    assert_eq!(
        commands,
        ["command=guest-file-open", "command=guest-exec"],
        "{text}"
    );
    Ok(())
}

#[test]
fn hardened_profile_refuses_what_it_says() -> TestResult {
    let agent = Agent::with_config("profile = \"hardened\"\n", &[])?;
    let mut c = agent.connect()?;
    for command in ["guest-exec", "guest-set-vcpus"] {
        let reply = c.execute(command, json!({}))?;
        assert_eq!(
            reply["error"],
            json!({"class": "CommandNotFound",
                   "desc": format!("Command {command} has been disabled (policy: hardened profile)")})
        );
    }
    let rpc = c.rpc("exec_command", json!({"command": "true"}))?;
    assert_eq!(rpc["error"]["code"], json!(-32001), "{rpc}");
    assert!(rpc["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("hardened profile"));
    let info = c.execute("guest-info", json!({}))?;
    let list = info["return"]["supported_commands"]
        .as_array()
        .ok_or("no list")?;
    let enabled = |name: &str| {
        list.iter()
            .find(|e| e["name"] == name)
            .map(|e| e["enabled"].clone())
    };
    assert_eq!(enabled("guest-exec"), Some(json!(false)));
    assert_eq!(enabled("guest-ping"), Some(json!(true)));
    assert_eq!(
        enabled("exec_command"),
        None,
        "JSON-RPC methods are not listed"
    );
    // Reads only under the profile's prefixes; writes only in the spool.
    let shadow = open(&mut c, Path::new("/etc/passwd"), "r")?;
    assert!(
        desc(&shadow).contains("(policy: read-prefixes)"),
        "{shadow}"
    );
    let os = open(&mut c, Path::new("/etc/os-release"), "r")?;
    assert!(os["return"].is_i64(), "{os}");
    let tmp = open(&mut c, &agent.path("x"), "w")?;
    assert!(desc(&tmp).contains("(policy: write-prefixes)"), "{tmp}");
    let caps = c.rpc("get_agent_info", json!({}))?;
    let caps = caps["result"]["capabilities"]
        .as_array()
        .ok_or("no capabilities")?
        .clone();
    assert!(!caps.contains(&json!("exec_command")) && caps.contains(&json!("ping")));
    Ok(())
}

#[test]
fn jsonrpc_methods_happy_paths() -> TestResult {
    let agent = Agent::with_config(
        "shutdown-command = \"$D/fake-shutdown\"\n[policy]\nread-prefixes = [\"$D\", \"/etc\"]\nwrite-prefixes = [\"$D/out\"]\n",
        &[],
    )?;
    let mut c = agent.connect()?;
    let ping = c.rpc("ping", json!({}))?;
    assert_eq!(ping["result"]["pong"], json!(true));
    assert!(ping["result"]["timestamp"].as_u64() > Some(1_600_000_000));
    let info = c.rpc("get_agent_info", json!({}))?["result"].clone();
    assert_eq!(info["platform"], "linux");
    assert_eq!(
        info["capabilities"].as_array().map(Vec::len),
        Some(10),
        "{info}"
    );
    let sys = c.rpc("get_system_info", json!({}))?["result"].clone();
    let host = nix::unistd::gethostname()?.to_string_lossy().into_owned();
    assert_eq!(sys["hostname"], json!(host));
    assert!(
        sys["cpu_count"].as_u64() >= Some(1) && sys["total_memory_kb"].as_u64() > Some(0),
        "{sys}"
    );
    let uname = nix::sys::utsname::uname()?;
    assert_eq!(
        sys["kernel_version"],
        json!(uname.release().to_string_lossy())
    );
    let net = c.rpc("get_network_info", json!({}))?["result"].clone();
    let lo = net["interfaces"]
        .as_array()
        .and_then(|l| l.iter().find(|i| i["name"] == "lo").cloned())
        .ok_or("no lo")?;
    assert!(
        lo["ipv4_addresses"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("127.0.0.1/8"))),
        "{lo}"
    );
    let disks = c.rpc("get_disk_usage", json!({}))?;
    assert!(disks["result"]["filesystems"].is_array(), "{disks}");
    // exec_command: argv without a shell, cwd, env, stdout/stderr, exit code.
    let run = c.rpc(
        "exec_command",
        json!({"command": "sh", "args": ["-c", "pwd; echo $FOO; echo err >&2; exit 3"],
               "working_directory": "/tmp", "env": {"FOO": "bar", "PATH": "/usr/bin:/bin"}}),
    )?["result"]
        .clone();
    assert_eq!(run["exit_code"], json!(3), "{run}");
    assert_eq!(run["stdout"], json!("/tmp\nbar\n"));
    assert_eq!(run["stderr"], json!("err\n"));
    let literal = c.rpc(
        "exec_command",
        json!({"command": "echo", "args": ["$HOME;", "*"]}),
    )?;
    assert_eq!(
        literal["result"]["stdout"],
        json!("$HOME; *\n"),
        "no shell expansion"
    );
    let missing = c.rpc("exec_command", json!({"command": "/nonexistent/prog"}))?;
    assert_eq!(missing["error"]["code"], json!(-32000), "{missing}");
    // file_write / file_read, both encodings; create_dirs and permissions.
    std::fs::create_dir(agent.path("out"))?;
    let target = agent.path("out/deep/file.bin");
    let wrote = c.rpc(
        "file_write",
        json!({"path": target.to_string_lossy(), "content": b64(&[0, 1, 2, 255]),
               "encoding": "base64", "create_dirs": true, "permissions": "0600"}),
    )?;
    assert_eq!(wrote["result"]["bytes_written"], json!(4), "{wrote}");
    assert_eq!(std::fs::read(&target)?, [0, 1, 2, 255]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&target)?.permissions().mode() & 0o777,
        0o600
    );
    let read = c.rpc(
        "file_read",
        json!({"path": target.to_string_lossy(), "encoding": "base64"}),
    )?;
    assert_eq!(unb64(&read["result"]["content"]), [0, 1, 2, 255]);
    assert_eq!(read["result"]["size_bytes"], json!(4));
    let hostname = c.rpc("file_read", json!({"path": "/etc/hostname"}))?;
    let expected = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    if Path::new("/etc/hostname").exists() {
        assert_eq!(hostname["result"]["content"], json!(expected));
    }
    // Error codes: not found, permission denied, invalid params, unknown method.
    let nf = c.rpc(
        "file_read",
        json!({"path": agent.path("nope").to_string_lossy()}),
    )?;
    assert_eq!(nf["error"]["code"], json!(-32002), "{nf}");
    let denied = c.rpc("file_read", json!({"path": "/root/.bashrc"}))?;
    assert_eq!(denied["error"]["code"], json!(-32001), "{denied}");
    let denied = c.rpc(
        "file_write",
        json!({"path": agent.path("x").to_string_lossy(), "content": "x"}),
    )?;
    assert_eq!(denied["error"]["code"], json!(-32001), "{denied}");
    let bad = c.rpc("file_read", json!({"path": 5}))?;
    assert_eq!(bad["error"]["code"], json!(-32602), "{bad}");
    let bad = c.rpc(
        "file_write",
        json!({"path": "/x", "content": "", "permissions": "rwx"}),
    )?;
    assert_eq!(bad["error"]["code"], json!(-32602), "{bad}");
    let unknown = c.rpc("get_everything", json!({}))?;
    assert_eq!(unknown["error"]["code"], json!(-32601), "{unknown}");
    // shutdown / reboot run the configured shutdown command with the right mode.
    let log = agent.path("shutdown.log");
    let script = format!("#!/bin/sh\necho \"$1\" >> {}\n", log.display());
    std::fs::write(agent.path("fake-shutdown"), script)?;
    std::fs::set_permissions(
        agent.path("fake-shutdown"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    let off = c.rpc("shutdown", json!({"timeout_seconds": 60, "force": false}))?;
    assert_eq!(
        off["result"],
        json!({"initiated": true, "message": "Shutdown initiated"})
    );
    let re = c.rpc("reboot", json!({}))?;
    assert_eq!(re["result"]["initiated"], json!(true));
    assert_eq!(std::fs::read_to_string(&log)?, "-P\n-r\n");
    Ok(())
}

#[test]
fn methods_are_gated_as_the_qga_command_they_ride_on() -> TestResult {
    let agent = Agent::with_config("", &["-b", "guest-exec,guest-file-write"])?;
    let mut c = agent.connect()?;
    let exec = c.rpc("exec_command", json!({"command": "true"}))?;
    assert_eq!(exec["error"]["code"], json!(-32001));
    assert_eq!(
        exec["error"]["message"],
        json!("Command exec_command has been disabled (policy: block-rpcs guest-exec)")
    );
    let write = c.rpc("file_write", json!({"path": "/tmp/x", "content": ""}))?;
    assert_eq!(write["error"]["code"], json!(-32001), "{write}");
    // qemu-ga's own text and class for the QGA name.
    let qga = c.execute("guest-exec", json!({"path": "true"}))?;
    assert_eq!(
        qga["error"],
        json!({"class": "CommandNotFound", "desc": "Command guest-exec has been disabled"})
    );
    assert_eq!(c.rpc("ping", json!({}))?["result"]["pong"], json!(true));
    Ok(())
}

#[test]
fn kvmmanager_json_configuration_is_honoured() -> TestResult {
    let dir = tempfile::tempdir()?;
    let allowed = dir.path().join("allowed");
    std::fs::create_dir_all(&allowed)?;
    std::fs::write(allowed.join("f"), "ok")?;
    let json_path = dir.path().join("config.json");
    std::fs::write(
        &json_path,
        json!({"log_level": "info", "security": {
            "allowed_read_paths": [allowed], "allowed_write_paths": [allowed],
            "command_whitelist": ["echo"], "max_file_size_mb": 1,
            "max_command_timeout_seconds": 5}})
        .to_string(),
    )?;
    let agent = Agent::with_config("", &["--kvmmanager-config", &json_path.to_string_lossy()])?;
    let mut c = agent.connect()?;
    let ok = c.rpc("file_read", json!({"path": allowed.join("f")}))?;
    assert_eq!(ok["result"]["content"], json!("ok"), "{ok}");
    let outside = c.rpc("file_read", json!({"path": "/etc/os-release"}))?;
    assert_eq!(outside["error"]["code"], json!(-32001), "{outside}");
    let big = c.rpc(
        "file_write",
        json!({"path": allowed.join("big"), "content": "x".repeat((1 << 20) + 1)}),
    )?;
    assert_eq!(big["error"]["code"], json!(-32001), "{big}");
    let echo = c.rpc("exec_command", json!({"command": "echo", "args": ["hi"]}))?;
    assert_eq!(echo["result"]["stdout"], json!("hi\n"), "{echo}");
    let other = c.rpc("exec_command", json!({"command": "id"}))?;
    assert_eq!(other["error"]["code"], json!(-32001), "{other}");
    let long = c.rpc(
        "exec_command",
        json!({"command": "echo", "timeout_seconds": 6}),
    )?;
    assert_eq!(long["error"]["code"], json!(-32001), "{long}");
    Ok(())
}
