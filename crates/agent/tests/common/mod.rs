//! The agent test harness shared by the integration tests: a real porthole-agent on a private
//! unix socket and state directory, killed on drop, and a raw line-oriented client.
#![allow(dead_code)] // Each test file uses its own part of the harness.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;
pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// A porthole-agent process, killed on drop.
pub struct Agent {
    pub child: Child,
    pub socket: PathBuf,
    pub statedir: PathBuf,
    /// Kept until the agent stops; handed back by [`Agent::stop`] for a restart.
    dir: Option<tempfile::TempDir>,
}

impl Agent {
    /// An agent with only command-line options.
    pub fn start(extra: &[&str]) -> Res<Self> {
        let dir = tempfile::tempdir()?;
        let statedir = dir.path().join("state");
        Self::start_in(dir, statedir, extra)
    }

    /// An agent reading `toml` as its configuration file (`$D` stands for its directory).
    pub fn with_config(toml: &str, extra: &[&str]) -> Res<Self> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, toml.replace("$D", &dir.path().to_string_lossy()))?;
        let statedir = dir.path().join("state");
        let config = config.to_string_lossy().into_owned();
        let mut args = vec!["-c", config.as_str()];
        args.extend_from_slice(extra);
        Self::start_in(dir, statedir, &args)
    }

    /// An agent in an existing directory and state directory (a restart).
    pub fn start_in(dir: tempfile::TempDir, statedir: PathBuf, extra: &[&str]) -> Res<Self> {
        let socket = dir.path().join("agent.sock");
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(env!("CARGO_BIN_EXE_porthole-agent"))
            .args(["-m", "unix-listen", "-p"])
            .arg(&socket)
            .arg("-t")
            .arg(&statedir)
            .args(extra)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut agent = Self {
            child,
            socket,
            statedir,
            dir: Some(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&agent.socket).is_err() {
            if let Some(status) = agent.child.try_wait()? {
                return Err(format!("agent exited at start: {status}").into());
            }
            if Instant::now() > deadline {
                return Err("agent did not create its socket within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(agent)
    }

    /// The agent's private directory.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new("."), |d| d.path())
    }

    /// A path in the agent's private directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir
            .as_ref()
            .map_or_else(|| PathBuf::from(name), |d| d.path().join(name))
    }

    pub fn connect(&self) -> Res<Client> {
        Client::connect(&self.socket)
    }

    /// Stops the agent, keeping its directory for a restart.
    pub fn stop(mut self) -> Result<(tempfile::TempDir, PathBuf), &'static str> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = self.dir.take().ok_or("agent directory already taken")?;
        Ok((dir, self.statedir.clone()))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One connection: requests written raw, replies read a line at a time.
pub struct Client {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Client {
    pub fn connect(path: &Path) -> Res<Self> {
        let stream = UnixStream::connect(path)?;
        // Generous: a 16 MiB exec output through a debug build on a loaded 2-core CI machine.
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Self {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), std::io::Error> {
        self.writer.write_all(bytes)
    }

    pub fn reply(&mut self) -> Res<Value> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        Ok(serde_json::from_str(&line)?)
    }

    /// Sends one request object and reads its reply.
    pub fn call(&mut self, request: &Value) -> Res<Value> {
        self.send_raw(request.to_string().as_bytes())?;
        self.reply()
    }

    /// A QGA command's whole reply (`return` or `error`).
    pub fn execute(&mut self, command: &str, arguments: Value) -> Res<Value> {
        self.call(&json!({"execute": command, "arguments": arguments}))
    }

    /// A QGA command's `return` member; an error reply is a test failure.
    pub fn ok(&mut self, command: &str, arguments: Value) -> Res<Value> {
        let reply = self.execute(command, arguments)?;
        match reply.get("return") {
            Some(value) => Ok(value.clone()),
            None => Err(format!("{command} failed: {reply}").into()),
        }
    }

    /// A JSON-RPC 2.0 call (id 1).
    pub fn rpc(&mut self, method: &str, params: Value) -> Res<Value> {
        self.call(&json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}))
    }

    /// Runs guest-exec and polls guest-exec-status until the process exited.
    pub fn exec_wait(&mut self, arguments: Value) -> Res<Value> {
        let started = self.execute("guest-exec", arguments)?;
        let pid = started["return"]["pid"].clone();
        if pid.is_null() {
            return Err(format!("guest-exec failed: {started}").into());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.execute("guest-exec-status", json!({ "pid": pid }))?;
            if status["return"]["exited"] == json!(true) {
                return Ok(status["return"].clone());
            }
            if Instant::now() > deadline {
                return Err(format!("process did not exit: {status}").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
