//! Accounts: guest-set-user-password and the guest-ssh-* commands on throwaway users made with
//! useradd (removed again with userdel -r), including the symlink and hard-link attacks a guest
//! user could plant in their own home directory.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// useradd/userdel/chpasswd lock /etc/passwd: one at a time within this binary.
static ACCOUNTS: Mutex<()> = Mutex::new(());

struct User {
    name: String,
    home: PathBuf,
    uid: u32,
}

impl User {
    fn new(tag: &str) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the account tests create users: run them as root"
        );
        let name = format!("pha{tag}{}", std::process::id() % 100000);
        let _guard = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let out = Command::new("useradd")
            .args(["-m", "-s", "/bin/false", &name])
            .output()
            .unwrap_or_else(|e| panic!("useradd (Debian package passwd): {e}"));
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let user = nix::unistd::User::from_name(&name)
            .ok()
            .flatten()
            .expect("new user");
        Self {
            name,
            home: user.dir,
            uid: user.uid.as_raw(),
        }
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _guard = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let _ = Command::new("userdel").args(["-r", &self.name]).output();
    }
}

struct Agent {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("agent.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_porthole-agent"))
            .args(["-m", "unix-listen", "-p"])
            .arg(&socket)
            .arg("-t")
            .arg(dir.path().join("state"))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("agent");
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "agent did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            socket,
            _dir: dir,
        }
    }

    fn call(&self, name: &str, args: Value) -> Value {
        let mut s = UnixStream::connect(&self.socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let req = json!({"execute": name, "arguments": args});
        s.write_all(req.to_string().as_bytes()).expect("send");
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).expect("reply");
        serde_json::from_str(&line).expect("JSON reply")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn desc(reply: &Value) -> String {
    reply["error"]["desc"].as_str().unwrap_or("").to_string()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .map(|m| m.mode() & 0o7777)
        .unwrap_or(0)
}

#[test]
fn ssh_keys_are_added_listed_and_removed() -> TestResult {
    let user = User::new("k");
    let agent = Agent::start();
    let keys_path = user.home.join(".ssh/authorized_keys");
    let get = || {
        agent.call(
            "guest-ssh-get-authorized-keys",
            json!({"username": user.name}),
        )
    };
    assert!(desc(&get()).starts_with("failed to read '"), "{}", get());
    let add = |keys: Value| {
        agent.call(
            "guest-ssh-add-authorized-keys",
            json!({"username": user.name, "keys": keys}),
        )
    };
    assert_eq!(
        add(json!([
            "ssh-rsa AAA one",
            "ssh-ed25519 BBB two",
            "ssh-rsa AAA one"
        ])),
        json!({"return": {}})
    );
    let ssh = user.home.join(".ssh");
    assert_eq!(mode(&ssh), 0o700);
    assert_eq!(mode(&keys_path), 0o600);
    assert_eq!(std::fs::metadata(&ssh)?.uid(), user.uid);
    assert_eq!(std::fs::metadata(&keys_path)?.uid(), user.uid);
    assert_eq!(
        std::fs::read_to_string(&keys_path)?,
        "ssh-rsa AAA one\nssh-ed25519 BBB two\n"
    );
    // Lines the agent did not write survive an add and a remove.
    std::fs::write(
        &keys_path,
        "# managed by hand\nfrom=\"10.0.0.1\" ssh-rsa CCC three\nssh-rsa AAA one\n",
    )?;
    assert_eq!(
        add(json!(["ssh-rsa AAA one", "ssh-ed25519 DDD four"])),
        json!({"return": {}})
    );
    assert_eq!(
        std::fs::read_to_string(&keys_path)?,
        "# managed by hand\nfrom=\"10.0.0.1\" ssh-rsa CCC three\nssh-rsa AAA one\nssh-ed25519 DDD four\n"
    );
    assert_eq!(
        get()["return"]["keys"],
        json!([
            "ssh-ed25519 DDD four",
            "ssh-rsa AAA one",
            "from=\"10.0.0.1\" ssh-rsa CCC three"
        ])
    );
    let removed = agent.call(
        "guest-ssh-remove-authorized-keys",
        json!({"username": user.name, "keys": ["ssh-rsa AAA one"]}),
    );
    assert_eq!(removed, json!({"return": {}}));
    assert_eq!(
        std::fs::read_to_string(&keys_path)?,
        "# managed by hand\nfrom=\"10.0.0.1\" ssh-rsa CCC three\nssh-ed25519 DDD four\n"
    );
    let reset = agent.call(
        "guest-ssh-add-authorized-keys",
        json!({"username": user.name, "keys": ["ssh-rsa EEE five"], "reset": true}),
    );
    assert_eq!(reset, json!({"return": {}}));
    assert_eq!(std::fs::read_to_string(&keys_path)?, "ssh-rsa EEE five\n");
    assert_eq!(desc(&add(json!([""]))), "invalid OpenSSH public key: ''");
    assert_eq!(
        desc(&add(json!(["#x"]))),
        "invalid OpenSSH public key: '#x'"
    );
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(&ssh)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("authorized_keys")]);
    Ok(())
}

#[test]
fn planted_symlinks_and_hard_links_are_refused() -> TestResult {
    let user = User::new("s");
    let agent = Agent::start();
    let victim = tempfile::tempdir()?;
    let victim_file = victim.path().join("authorized_keys");
    std::fs::write(&victim_file, "root's key\n")?;
    std::fs::set_permissions(&victim_file, std::fs::Permissions::from_mode(0o644))?;
    let ssh = user.home.join(".ssh");
    let add = |reset: bool| {
        agent.call(
            "guest-ssh-add-authorized-keys",
            json!({"username": user.name, "keys": ["ssh-rsa EVIL x"], "reset": reset}),
        )
    };
    let untouched = |what: &str| {
        assert_eq!(
            std::fs::read_to_string(&victim_file).ok().as_deref(),
            Some("root's key\n"),
            "{what}"
        );
        let meta = std::fs::metadata(&victim_file).ok();
        assert_eq!(meta.as_ref().map(|m| m.uid()), Some(0), "{what}: owner");
        assert_eq!(meta.map(|m| m.mode() & 0o777), Some(0o644), "{what}: mode");
        assert_eq!(
            std::fs::metadata(victim.path()).map(|m| m.uid()).ok(),
            Some(0),
            "{what}: dir owner"
        );
    };
    // ~/.ssh -> a root-owned directory.
    std::os::unix::fs::symlink(victim.path(), &ssh)?;
    for reset in [false, true] {
        let reply = add(reset);
        assert!(desc(&reply).contains("is not a directory"), "{reply}");
    }
    let reply = agent.call(
        "guest-ssh-get-authorized-keys",
        json!({"username": user.name}),
    );
    assert!(reply.get("error").is_some(), "{reply}");
    let reply = agent.call(
        "guest-ssh-remove-authorized-keys",
        json!({"username": user.name, "keys": ["root's key"]}),
    );
    assert!(reply.get("error").is_some(), "{reply}");
    untouched(".ssh symlink");
    std::fs::remove_file(&ssh)?;
    // ~/.ssh/authorized_keys -> a root-owned file.
    std::fs::create_dir(&ssh)?;
    nix::unistd::chown(&ssh, Some(nix::unistd::Uid::from_raw(user.uid)), None)?;
    let keys = ssh.join("authorized_keys");
    std::os::unix::fs::symlink(&victim_file, &keys)?;
    let reply = add(false);
    assert!(
        desc(&reply).contains("Too many levels of symbolic links"),
        "{reply}"
    );
    let reply = agent.call(
        "guest-ssh-get-authorized-keys",
        json!({"username": user.name}),
    );
    assert!(
        desc(&reply).contains("Too many levels of symbolic links"),
        "{reply}"
    );
    untouched("authorized_keys symlink");
    // reset replaces the link itself, never its target.
    assert_eq!(add(true), json!({"return": {}}));
    untouched("reset over a symlink");
    assert!(std::fs::symlink_metadata(&keys)?.is_file());
    assert_eq!(std::fs::read_to_string(&keys)?, "ssh-rsa EVIL x\n");
    // A hard link to another file is refused.
    std::fs::remove_file(&keys)?;
    std::fs::hard_link(&victim_file, &keys)?;
    let reply = add(false);
    assert!(desc(&reply).contains("one link"), "{reply}");
    untouched("hard link");
    // ~/.ssh owned by someone else is refused.
    std::fs::remove_file(&keys)?;
    nix::unistd::chown(&ssh, Some(nix::unistd::Uid::from_raw(65534)), None)?;
    let reply = add(false);
    assert!(desc(&reply).contains("belongs to uid 65534"), "{reply}");
    Ok(())
}

#[test]
fn set_user_password_reaches_shadow() -> TestResult {
    let user = User::new("p");
    let agent = Agent::start();
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let hash = "$6$porthole$0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ./0123456789abcdefghij";
    let reply = {
        let _guard = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        agent.call(
            "guest-set-user-password",
            json!({"username": user.name, "password": b64(hash), "crypted": true}),
        )
    };
    assert_eq!(reply, json!({"return": {}}));
    let shadow = std::fs::read_to_string("/etc/shadow")?;
    let entry = shadow
        .lines()
        .find(|l| l.starts_with(&format!("{}:", user.name)))
        .ok_or("no shadow entry")?;
    assert_eq!(entry.split(':').nth(1), Some(hash));
    let reply = {
        let _guard = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        agent.call(
            "guest-set-user-password",
            json!({"username": user.name, "password": b64("Plain-text password 42"), "crypted": false}),
        )
    };
    assert_eq!(reply, json!({"return": {}}));
    let shadow = std::fs::read_to_string("/etc/shadow")?;
    let field = shadow
        .lines()
        .find(|l| l.starts_with(&format!("{}:", user.name)))
        .and_then(|l| l.split(':').nth(1))
        .ok_or("no shadow entry")?
        .to_string();
    assert!(
        field.starts_with('$') && field != hash,
        "chpasswd hashed it: {field}"
    );
    let reply = agent.call(
        "guest-set-user-password",
        json!({"username": user.name, "password": b64("a\0b"), "crypted": true}),
    );
    assert_eq!(desc(&reply), "forbidden characters in raw password");
    Ok(())
}
