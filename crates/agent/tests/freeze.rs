//! Filesystem freezing on a real filesystem: an ext4 image loop-mounted in a private mount
//! namespace that only the test and its agents share.
//!
//! Safety: every agent here reads a mountinfo file (`PORTHOLE_AGENT_MOUNTINFO`) that lists only
//! the test's own loop mount, so even the unrestricted guest-fsfreeze-freeze and the thaw (which
//! FITHAWs every listed mount) touch nothing else on the machine. The fixture thaws with
//! fsfreeze(8) and unmounts on drop, whatever the test did.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn need(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(tool).is_file()
        || Path::new("/sbin").join(tool).is_file();
    assert!(
        found,
        "{tool} is missing: install the Debian package {package}"
    );
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An ext4 image mounted in a private mount namespace held open by a `sleep` process.
struct LoopFs {
    dir: tempfile::TempDir,
    mnt: PathBuf,
    holder: Child,
    mountinfo: PathBuf,
}

impl LoopFs {
    fn new() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the freeze tests mount a loop device: run them as root"
        );
        need("mkfs.ext4", "e2fsprogs");
        need("unshare", "util-linux");
        need("nsenter", "util-linux");
        need("fsfreeze", "util-linux");
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join("fs.img");
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(64 << 20))
            .expect("sparse image");
        run("mkfs.ext4", &["-q", "-F", &img.to_string_lossy()]);
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mount point");
        let mut holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("mount -o loop \"$0\" \"$1\" && echo mounted && exec sleep 100000")
            .arg(&img)
            .arg(&mnt)
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("holder stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("holder output");
        assert_eq!(line.trim(), "mounted", "loop mount failed");
        // The namespace's mountinfo, cut down to the loop mount alone.
        let all = std::fs::read_to_string(format!("/proc/{}/mountinfo", holder.id()))
            .expect("holder mountinfo");
        let mine: Vec<&str> = all
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some(&*mnt.to_string_lossy()))
            .collect();
        assert_eq!(
            mine.len(),
            1,
            "exactly one mount at {}: {all}",
            mnt.display()
        );
        let mountinfo = dir.path().join("mountinfo");
        std::fs::write(&mountinfo, format!("{}\n", mine[0])).expect("fake mountinfo");
        Self {
            dir,
            mnt,
            holder,
            mountinfo,
        }
    }

    /// `name` on the loop filesystem, as seen from outside the namespace.
    fn inside(&self, name: &str) -> PathBuf {
        let mut p = PathBuf::from(format!("/proc/{}/root", self.holder.id()));
        p.push(self.mnt.strip_prefix("/").expect("absolute mount point"));
        p.push(name);
        p
    }

    fn mnt(&self) -> String {
        self.mnt.to_string_lossy().into_owned()
    }

    fn nsenter(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holder.id().to_string(), "-m", "--"])
            .args(args);
        c
    }

    /// Starts an agent inside the namespace on `statedir`, reading only our mountinfo.
    fn agent(&self, statedir: &Path, extra: &[&str]) -> Agent {
        let socket = self.dir.path().join(format!(
            "agent-{}.sock",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let child = self
            .nsenter(&[env!("CARGO_BIN_EXE_porthole-agent")])
            .args(["-m", "unix-listen", "-p"])
            .arg(&socket)
            .arg("-t")
            .arg(statedir)
            .args(extra)
            .env("PORTHOLE_AGENT_MOUNTINFO", &self.mountinfo)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start agent");
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "agent did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent { child, socket }
    }

    /// Writes a file on the loop filesystem in a thread; the receiver gets the result.
    fn write_in_thread(&self, name: &str) -> mpsc::Receiver<std::io::Result<()>> {
        let path = self.inside(name);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(std::fs::write(path, b"written while frozen?"));
        });
        rx
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let mnt = self.mnt();
        let _ = self.nsenter(&["fsfreeze", "-u", &mnt]).output();
        let _ = self.nsenter(&["umount", &mnt]).output();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    fn call(&self, name: &str, args: Value) -> Value {
        let mut s = UnixStream::connect(&self.socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let mut req = json!({"execute": name});
        if !args.is_null() {
            req["arguments"] = args;
        }
        s.write_all(req.to_string().as_bytes()).expect("send");
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).expect("reply");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{name}: bad reply {line:?}: {e}"))
    }

    fn ok(&self, name: &str, args: Value) -> Value {
        let reply = self.call(name, args);
        match reply.get("return") {
            Some(v) => v.clone(),
            None => panic!("{name} failed: {reply}"),
        }
    }

    /// guest-fsfreeze-status once it reads `want`, within 5 s. A thaw unblocks writers at its
    /// FITHAW, a moment before it clears the frozen marker that the status reads (qemu-ga's
    /// order), so a writer can see the thaw before the status does.
    fn status_becomes(&self, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let status = self.ok("guest-fsfreeze-status", Value::Null);
            if status == json!(want) || Instant::now() > deadline {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn desc(reply: &Value) -> &str {
    reply["error"]["desc"].as_str().unwrap_or("")
}

fn enabled(agent: &Agent, command: &str) -> Option<bool> {
    agent.ok("guest-info", Value::Null)["supported_commands"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == command))
        .and_then(|c| c["enabled"].as_bool())
}

#[test]
fn freeze_list_blocks_writes_until_thaw() -> TestResult {
    let fs = LoopFs::new();
    let state = fs.dir.path().join("state");
    // The log file lives on the filesystem being frozen: an agent that wrote to it while
    // frozen would hang and never answer the thaw.
    let log = format!("{}/agent.log", fs.mnt());
    let agent = fs.agent(&state, &["-l", &log, "-v"]);
    assert_eq!(
        agent.ok(
            "guest-fsfreeze-freeze-list",
            json!({"mountpoints": ["/nonexistent-porthole"]})
        ),
        json!(0)
    );
    assert_eq!(
        agent.ok("guest-fsfreeze-status", Value::Null),
        json!("thawed")
    );
    assert_eq!(
        agent.ok(
            "guest-fsfreeze-freeze-list",
            json!({"mountpoints": [fs.mnt()]})
        ),
        json!(1)
    );
    assert_eq!(
        agent.ok("guest-fsfreeze-status", Value::Null),
        json!("frozen")
    );
    assert!(state.join("porthole-agent.frozen").exists());
    let write = fs.write_in_thread("blocked");
    assert!(
        matches!(
            write.recv_timeout(Duration::from_millis(1500)),
            Err(mpsc::RecvTimeoutError::Timeout)
        ),
        "a write to the frozen filesystem completed"
    );
    let refused = agent.call("guest-exec", json!({"path": "/bin/true"}));
    assert_eq!(refused["error"]["class"], "CommandNotFound");
    assert_eq!(
        desc(&refused),
        "Command guest-exec has been disabled: the agent is in frozen state"
    );
    assert_eq!(enabled(&agent, "guest-exec"), Some(false));
    assert_eq!(enabled(&agent, "guest-fsfreeze-thaw"), Some(true));
    assert_eq!(agent.ok("guest-ping", Value::Null), json!({}));
    assert_eq!(agent.ok("guest-fsfreeze-thaw", Value::Null), json!(1));
    write.recv_timeout(Duration::from_secs(20))??;
    assert_eq!(
        std::fs::read(fs.inside("blocked"))?,
        b"written while frozen?"
    );
    assert_eq!(
        agent.ok("guest-fsfreeze-status", Value::Null),
        json!("thawed")
    );
    assert!(!state.join("porthole-agent.frozen").exists());
    assert_eq!(enabled(&agent, "guest-exec"), Some(true));
    // What was logged while frozen reached the file after the thaw.
    let text = std::fs::read_to_string(fs.inside("agent.log"))?;
    assert!(text.contains("froze 1 filesystem(s)"), "log: {text}");
    assert!(text.contains("thawed 1 filesystem(s)"), "log: {text}");
    Ok(())
}

#[test]
fn restarted_agent_comes_back_frozen() -> TestResult {
    let fs = LoopFs::new();
    let state = fs.dir.path().join("state");
    let agent = fs.agent(&state, &[]);
    // The unrestricted freeze: our mountinfo lists only the loop mount.
    assert_eq!(agent.ok("guest-fsfreeze-freeze", Value::Null), json!(1));
    drop(agent);
    let agent = fs.agent(&state, &[]);
    assert_eq!(
        agent.ok("guest-fsfreeze-status", Value::Null),
        json!("frozen")
    );
    let refused = agent.call("guest-exec", json!({"path": "/bin/true"}));
    assert_eq!(
        desc(&refused),
        "Command guest-exec has been disabled: the agent is in frozen state"
    );
    let refused = agent.call("guest-fsfreeze-freeze", Value::Null);
    assert_eq!(
        desc(&refused),
        "Command guest-fsfreeze-freeze has been disabled: the agent is in frozen state"
    );
    let write = fs.write_in_thread("after-restart");
    assert!(
        write.recv_timeout(Duration::from_millis(1000)).is_err(),
        "still frozen"
    );
    assert_eq!(agent.ok("guest-fsfreeze-thaw", Value::Null), json!(1));
    write.recv_timeout(Duration::from_secs(20))??;
    assert_eq!(
        agent.ok("guest-fsfreeze-status", Value::Null),
        json!("thawed")
    );
    // A thaw with nothing frozen thaws nothing.
    assert_eq!(agent.ok("guest-fsfreeze-thaw", Value::Null), json!(0));
    Ok(())
}

#[test]
fn auto_thaw_fires_and_explicit_thaw_cancels_it() -> TestResult {
    let fs = LoopFs::new();
    let state = fs.dir.path().join("state");
    let log = fs.dir.path().join("agent.log");
    let agent = fs.agent(
        &state,
        &["--fsfreeze-auto-thaw", "2", "-l", &log.to_string_lossy()],
    );
    assert_eq!(agent.ok("guest-fsfreeze-freeze", Value::Null), json!(1));
    let started = Instant::now();
    let write = fs.write_in_thread("auto");
    write.recv_timeout(Duration::from_secs(20))??;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "thawed too early: {waited:?}"
    );
    assert_eq!(agent.status_becomes("thawed"), json!("thawed"));
    let text = std::fs::read_to_string(&log)?;
    assert!(
        text.contains("WARN") && text.contains("auto-thaw"),
        "log: {text}"
    );
    // Freeze, thaw at once, freeze again: the first freeze's timer must not cut the second
    // freeze short.
    assert_eq!(agent.ok("guest-fsfreeze-freeze", Value::Null), json!(1));
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(agent.ok("guest-fsfreeze-thaw", Value::Null), json!(1));
    assert_eq!(agent.ok("guest-fsfreeze-freeze", Value::Null), json!(1));
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(
        agent.ok("guest-fsfreeze-status", Value::Null),
        json!("frozen"),
        "the cancelled timer fired"
    );
    assert_eq!(agent.status_becomes("thawed"), json!("thawed"));
    // A restarted agent that finds the marker arms a fresh timer.
    assert_eq!(agent.ok("guest-fsfreeze-freeze", Value::Null), json!(1));
    drop(agent);
    let agent = fs.agent(&state, &["--fsfreeze-auto-thaw", "2"]);
    assert_eq!(
        agent.ok("guest-fsfreeze-status", Value::Null),
        json!("frozen")
    );
    fs.write_in_thread("after-restart")
        .recv_timeout(Duration::from_secs(20))??;
    assert_eq!(agent.status_becomes("thawed"), json!("thawed"));
    Ok(())
}

fn script(path: &Path, body: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[test]
fn hook_and_script_directories_run_in_order() -> TestResult {
    let fs = LoopFs::new();
    let hooks = fs.dir.path().join("hooks");
    std::fs::create_dir(&hooks)?;
    let log = fs.dir.path().join("hooks.log");
    let line = |who: &str| format!("echo \"{who} $1\" >> {}", log.display());
    let hook = hooks.join("fsfreeze-hook");
    script(&hook, &line("hook"))?;
    for d in ["pre-freeze.d", "post-thaw.d"] {
        std::fs::create_dir(hooks.join(d))?;
        script(
            &hooks.join(d).join("50-second"),
            &line(&format!("{d}/second")),
        )?;
        script(
            &hooks.join(d).join("10-first"),
            &line(&format!("{d}/first")),
        )?;
    }
    let agent = fs.agent(
        &fs.dir.path().join("state"),
        &[&format!("--fsfreeze-hook={}", hook.display())],
    );
    assert_eq!(agent.ok("guest-fsfreeze-freeze", Value::Null), json!(1));
    assert_eq!(agent.ok("guest-fsfreeze-thaw", Value::Null), json!(1));
    assert_eq!(
        std::fs::read_to_string(&log)?,
        "hook freeze\npre-freeze.d/first freeze\npre-freeze.d/second freeze\n\
         post-thaw.d/first thaw\npost-thaw.d/second thaw\nhook thaw\n"
    );
    // A failing hook aborts the freeze: nothing frozen, nothing marked.
    script(&hook, "exit 5")?;
    let reply = agent.call("guest-fsfreeze-freeze", Value::Null);
    assert_eq!(desc(&reply), "fsfreeze hook has failed with status 5");
    assert_eq!(
        agent.ok("guest-fsfreeze-status", Value::Null),
        json!("thawed")
    );
    fs.write_in_thread("not-frozen")
        .recv_timeout(Duration::from_secs(10))??;
    // A failing pre-freeze script aborts too, and the hook is told to thaw.
    std::fs::remove_file(&log)?;
    script(&hook, &line("hook"))?;
    script(&hooks.join("pre-freeze.d").join("20-fails"), "exit 9")?;
    let reply = agent.call(
        "guest-fsfreeze-freeze-list",
        json!({"mountpoints": [fs.mnt()]}),
    );
    assert!(
        desc(&reply).ends_with("20-fails' has failed with status 9"),
        "{reply}"
    );
    assert_eq!(
        std::fs::read_to_string(&log)?,
        "hook freeze\npre-freeze.d/first freeze\nhook thaw\n"
    );
    fs.write_in_thread("still-not-frozen")
        .recv_timeout(Duration::from_secs(10))??;
    Ok(())
}

#[test]
fn fstrim_trims_the_loop_filesystem() -> TestResult {
    let fs = LoopFs::new();
    let agent = fs.agent(&fs.dir.path().join("state"), &[]);
    let reply = agent.ok("guest-fstrim", Value::Null);
    let paths = reply["paths"].as_array().ok_or("paths")?;
    assert_eq!(paths.len(), 1, "{reply}");
    assert_eq!(paths[0]["path"], json!(fs.mnt()));
    assert_eq!(paths[0]["minimum"], json!(0));
    assert!(
        paths[0]["trimmed"].as_u64().is_some_and(|n| n > 0),
        "a fresh 64 MiB ext4 has free space to trim: {reply}"
    );
    let reply = agent.ok("guest-fstrim", json!({"minimum": -1}));
    assert_eq!(
        reply,
        json!({"paths": [{"path": fs.mnt(), "error": "failed to trim: Invalid argument"}]})
    );
    Ok(())
}
