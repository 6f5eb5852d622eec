//! The agent's configuration: qemu-ga's command line, porthole's TOML file, and qemu-ga's keyfile.
//!
//! Precedence, lowest first: built-in defaults, the configuration file, the command line — the
//! same as qemu-ga, so a unit file written for qemu-ga keeps its meaning. The file is porthole's
//! own TOML (`/etc/porthole/agent.toml`), or, to ease migration, an existing qemu-ga keyfile
//! (`/etc/qemu/qemu-ga.conf`, group `[general]`, the same keys as the long options).

use crate::policy::{PolicyConfig, Profile};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// porthole's own configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/porthole/agent.toml";
/// qemu-ga's configuration file, read when porthole's does not exist.
pub const QEMU_GA_CONFIG_PATH: &str = "/etc/qemu/qemu-ga.conf";
/// The virtio-serial port name libvirt and QEMU use for the guest agent.
pub const DEFAULT_VIRTIO_PORT: &str = "org.qemu.guest_agent.0";
pub const DEFAULT_SERIAL_PATH: &str = "/dev/ttyS0";
pub const DEFAULT_STATEDIR: &str = "/run/porthole-agent";
pub const DEFAULT_FSFREEZE_HOOK: &str = "/etc/qemu/fsfreeze-hook";
/// Seconds after which frozen filesystems are thawed if the host has not (0: never).
pub const DEFAULT_FSFREEZE_AUTO_THAW: u64 = 600;
/// The virtio-serial port of the KVM Manager agent API (`kvmmanager-compat = true`).
pub const KVMMANAGER_PORT: &str = "org.kvmmanager.agent.0";
/// The largest JSON configuration file of the KVM Manager agent read.
const KVMMANAGER_CONFIG_LIMIT: u64 = 1 << 20;
/// vsock port used when vsock-listen is given no `CID:PORT`.
pub const DEFAULT_VSOCK_PORT: u32 = 1234;
/// The host's vsock address.
pub const VSOCK_HOST_CID: u32 = 2;

/// How the agent reaches its host (qemu-ga's `-m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    VirtioSerial,
    IsaSerial,
    UnixListen,
    VsockListen,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::VirtioSerial => "virtio-serial",
            Method::IsaSerial => "isa-serial",
            Method::UnixListen => "unix-listen",
            Method::VsockListen => "vsock-listen",
        }
    }

    pub fn parse(name: &str) -> Result<Self, ConfigError> {
        match name {
            "virtio-serial" => Ok(Method::VirtioSerial),
            "isa-serial" => Ok(Method::IsaSerial),
            "unix-listen" => Ok(Method::UnixListen),
            "vsock-listen" => Ok(Method::VsockListen),
            other => Err(ConfigError::Invalid {
                key: "method",
                value: other.to_string(),
                why: "expected virtio-serial, isa-serial, unix-listen or vsock-listen",
            }),
        }
    }
}

/// One channel the agent serves.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub method: Method,
    /// Device path, socket path, port name, or `CID:PORT` for vsock; `None` means the default.
    pub path: Option<String>,
}

/// Everything the agent runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listeners: Vec<Listener>,
    pub statedir: PathBuf,
    pub logfile: Option<PathBuf>,
    pub pidfile: Option<PathBuf>,
    pub fsfreeze_hook: Option<PathBuf>,
    pub daemonize: bool,
    pub verbose: bool,
    pub retry_path: bool,
    pub block_rpcs: Vec<String>,
    pub allow_rpcs: Option<Vec<String>>,
    /// The program guest-shutdown runs; qemu-ga's is /sbin/shutdown.
    pub shutdown_command: PathBuf,
    /// Peers a vsock-listen channel accepts: the host (CID 2) unless configured otherwise, so a
    /// guest user cannot reach the agent through vsock loopback.
    pub vsock_allowed_cids: Vec<u32>,
    /// `USER[:GROUP]` that owns unix-listen sockets (mode 0600 either way); `None` leaves them
    /// to the agent's own user, root.
    pub unix_socket_owner: Option<String>,
    /// Seconds a freeze may last before the agent thaws on its own; 0 disables.
    pub fsfreeze_auto_thaw: u64,
    /// The security policy (docs/policy.md).
    pub policy: PolicyConfig,
    /// Also serve this virtio-serial port with the KVM Manager agent API in mind
    /// (`kvmmanager-compat = true` sets `org.kvmmanager.agent.0`).
    pub kvmmanager_compat: Option<String>,
}

impl Config {
    /// Adds the KVM Manager port to the listeners when `kvmmanager-compat` asks for it and no
    /// listener serves it yet.
    pub fn add_compat_listener(&mut self) {
        let Some(path) = self.kvmmanager_compat.clone() else {
            return;
        };
        let present = self
            .listeners
            .iter()
            .any(|l| l.method == Method::VirtioSerial && l.path.as_deref() == Some(path.as_str()));
        if !present {
            self.listeners.push(Listener {
                method: Method::VirtioSerial,
                path: Some(path),
            });
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listeners: vec![Listener {
                method: Method::VirtioSerial,
                path: None,
            }],
            statedir: PathBuf::from(DEFAULT_STATEDIR),
            logfile: None,
            pidfile: None,
            fsfreeze_hook: None,
            daemonize: false,
            verbose: false,
            retry_path: false,
            block_rpcs: Vec::new(),
            allow_rpcs: None,
            shutdown_command: PathBuf::from("/sbin/shutdown"),
            vsock_allowed_cids: vec![VSOCK_HOST_CID],
            unix_socket_owner: None,
            fsfreeze_auto_thaw: DEFAULT_FSFREEZE_AUTO_THAW,
            policy: PolicyConfig::default(),
            kvmmanager_compat: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("invalid {key} '{value}': {why}")]
    Invalid {
        key: &'static str,
        value: String,
        why: &'static str,
    },
}

/// porthole's TOML file. Keys are qemu-ga's long option names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub method: Option<Method>,
    pub path: Option<String>,
    /// Extra channels beside `method`/`path` (e.g. libvirt's port plus a porthole port plus vsock).
    #[serde(default)]
    pub listen: Vec<Listener>,
    pub statedir: Option<PathBuf>,
    pub logfile: Option<PathBuf>,
    pub pidfile: Option<PathBuf>,
    pub fsfreeze_hook: Option<PathBuf>,
    pub daemon: Option<bool>,
    pub verbose: Option<bool>,
    pub retry_path: Option<bool>,
    pub block_rpcs: Option<Vec<String>>,
    pub allow_rpcs: Option<Vec<String>>,
    pub shutdown_command: Option<PathBuf>,
    pub vsock_allowed_cids: Option<Vec<u32>>,
    pub unix_socket_owner: Option<String>,
    pub fsfreeze_auto_thaw: Option<u64>,
    /// Shorthand for `[policy] profile`.
    pub profile: Option<Profile>,
    pub policy: Option<PolicySection>,
    /// Also serve virtio-serial port `org.kvmmanager.agent.0`.
    pub kvmmanager_compat: Option<bool>,
    /// A KVM Manager agent JSON configuration whose `security` keys map onto the policy.
    pub kvmmanager_config: Option<PathBuf>,
}

/// The `[policy]` table of porthole's TOML file (docs/policy.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicySection {
    pub profile: Option<Profile>,
    pub read_prefixes: Option<Vec<PathBuf>>,
    pub write_prefixes: Option<Vec<PathBuf>>,
    pub exec_programs: Option<Vec<PathBuf>>,
    pub exec_users: Option<Vec<String>>,
    pub exec_max_timeout: Option<u64>,
    pub exec_max_output: Option<usize>,
    pub file_max_read: Option<usize>,
    pub file_max_write: Option<usize>,
    pub file_max_size: Option<u64>,
    pub max_message: Option<usize>,
    pub audit_log: Option<PathBuf>,
    /// `auto` (openat2, else the walk) or `walk`.
    pub path_resolver: Option<String>,
}

impl PolicySection {
    fn apply(self, policy: &mut PolicyConfig) -> Result<(), ConfigError> {
        set(&mut policy.profile, self.profile);
        set_opt(&mut policy.read_prefixes, self.read_prefixes);
        set_opt(&mut policy.write_prefixes, self.write_prefixes);
        set_opt(&mut policy.exec_programs, self.exec_programs);
        set_opt(&mut policy.exec_users, self.exec_users);
        set_opt(&mut policy.exec_max_timeout, self.exec_max_timeout);
        set_opt(&mut policy.exec_max_output, self.exec_max_output);
        set_opt(&mut policy.file_max_read, self.file_max_read);
        set_opt(&mut policy.file_max_write, self.file_max_write);
        set_opt(&mut policy.file_max_size, self.file_max_size);
        set_opt(&mut policy.max_message, self.max_message);
        set_opt(&mut policy.audit_log, self.audit_log);
        match self.path_resolver.as_deref() {
            None => {}
            Some("auto") => policy.path_walk_only = false,
            Some("walk") => policy.path_walk_only = true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "path-resolver",
                    value: other.to_string(),
                    why: "expected auto or walk",
                })
            }
        }
        Ok(())
    }
}

impl FileConfig {
    /// Reads a configuration file, telling TOML from qemu-ga's keyfile by its `[general]` group.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let syntax = |message: String| ConfigError::Syntax {
            path: path.to_path_buf(),
            message,
        };
        if is_keyfile(&text) {
            parse_keyfile(&text).map_err(syntax)
        } else {
            toml::from_str(&text).map_err(|e| syntax(e.to_string()))
        }
    }

    /// Applies this file over `config`.
    pub fn apply(self, config: &mut Config) -> Result<(), ConfigError> {
        let mut listeners = Vec::new();
        if self.method.is_some() || self.path.is_some() {
            listeners.push(Listener {
                method: self.method.unwrap_or(Method::VirtioSerial),
                path: self.path,
            });
        }
        listeners.extend(self.listen);
        if !listeners.is_empty() {
            config.listeners = listeners;
        }
        set(&mut config.statedir, self.statedir);
        set_opt(&mut config.logfile, self.logfile);
        set_opt(&mut config.pidfile, self.pidfile);
        set_opt(&mut config.fsfreeze_hook, self.fsfreeze_hook);
        set(&mut config.daemonize, self.daemon);
        set(&mut config.verbose, self.verbose);
        set(&mut config.retry_path, self.retry_path);
        set(&mut config.block_rpcs, self.block_rpcs);
        set_opt(&mut config.allow_rpcs, self.allow_rpcs);
        set(&mut config.shutdown_command, self.shutdown_command);
        set(&mut config.vsock_allowed_cids, self.vsock_allowed_cids);
        set_opt(&mut config.unix_socket_owner, self.unix_socket_owner);
        set(&mut config.fsfreeze_auto_thaw, self.fsfreeze_auto_thaw);
        set(&mut config.policy.profile, self.profile);
        if let Some(section) = self.policy {
            section.apply(&mut config.policy)?;
        }
        match self.kvmmanager_compat {
            Some(true) if config.kvmmanager_compat.is_none() => {
                config.kvmmanager_compat = Some(KVMMANAGER_PORT.to_string())
            }
            Some(false) => config.kvmmanager_compat = None,
            _ => {}
        }
        if let Some(path) = self.kvmmanager_config {
            KvmManagerConfig::load(&path)?.apply(config)?;
        }
        Ok(())
    }
}

/// The KVM Manager agent's JSON configuration, as far as it maps onto porthole. Its keys may sit
/// in a `security` object (the protocol document) or at the top level (its packaged file).
/// Keys porthole has no use for (log level, retry seconds, ...) are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct KvmManagerConfig {
    #[serde(default)]
    pub security: Option<KvmManagerSecurity>,
    #[serde(flatten)]
    pub top: KvmManagerSecurity,
    pub channel_name: Option<String>,
    pub max_message_size_kb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct KvmManagerSecurity {
    pub allowed_read_paths: Option<Vec<PathBuf>>,
    pub allowed_write_paths: Option<Vec<PathBuf>>,
    /// `null` (or absent) allows every program.
    pub command_whitelist: Option<Vec<PathBuf>>,
    /// The packaged file's switch; `false` ignores `command_whitelist`.
    pub command_whitelist_enabled: Option<bool>,
    pub max_file_size_mb: Option<u64>,
    pub max_file_size_bytes: Option<u64>,
    pub max_command_timeout_seconds: Option<u64>,
    pub command_timeout_seconds: Option<u64>,
}

impl KvmManagerConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        use std::io::Read as _;
        let read_err = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(read_err)?
            .take(KVMMANAGER_CONFIG_LIMIT)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        serde_json::from_str(&text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Maps the keys onto `config`: read/write paths become the prefixes, the whitelist the
    /// allowed programs, the file size cap every file size cap, the timeout the exec maximum;
    /// `channel_name` turns `kvmmanager-compat` on with that port.
    pub fn apply(self, config: &mut Config) -> Result<(), ConfigError> {
        let policy = &mut config.policy;
        for s in [Some(self.top), self.security].into_iter().flatten() {
            set_opt(&mut policy.read_prefixes, s.allowed_read_paths);
            set_opt(&mut policy.write_prefixes, s.allowed_write_paths);
            if s.command_whitelist_enabled != Some(false) {
                set_opt(&mut policy.exec_programs, s.command_whitelist);
            }
            let mb = s.max_file_size_mb.map(|mb| mb.saturating_mul(1 << 20));
            if let Some(bytes) = s.max_file_size_bytes.or(mb) {
                let small = usize::try_from(bytes).unwrap_or(usize::MAX);
                policy.file_max_size = Some(bytes);
                policy.file_max_read = Some(small.min(crate::policy::DEFAULT_FILE_MAX_READ));
                policy.file_max_write = Some(small);
            }
            set_opt(
                &mut policy.exec_max_timeout,
                s.max_command_timeout_seconds.or(s.command_timeout_seconds),
            );
        }
        if let Some(kb) = self.max_message_size_kb {
            let bytes = kb.saturating_mul(1024);
            policy.max_message =
                Some(usize::try_from(bytes).map_err(|_| ConfigError::Invalid {
                    key: "max_message_size_kb",
                    value: kb.to_string(),
                    why: "too large",
                })?);
        }
        if let Some(port) = self.channel_name {
            if port.is_empty() || port.contains('/') {
                return Err(ConfigError::Invalid {
                    key: "channel_name",
                    value: port,
                    why: "expected a virtio-serial port name",
                });
            }
            config.kvmmanager_compat = Some(port);
        }
        Ok(())
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

fn set_opt<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}

fn is_keyfile(text: &str) -> bool {
    text.lines().any(|line| line.trim() == "[general]")
}

/// Parses qemu-ga's GKeyFile: `[general]` then `key=value` lines; `#` comments; lists split on
/// `,` or `;` (qemu-ga reads them with g_key_file_get_string_list, users write either).
fn parse_keyfile(text: &str) -> Result<FileConfig, String> {
    let mut config = FileConfig::default();
    let mut in_general = false;
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            in_general = line == "[general]";
            continue;
        }
        if !in_general {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected key=value", number + 1));
        };
        apply_keyfile_entry(&mut config, key.trim(), value.trim())
            .map_err(|e| format!("line {}: {e}", number + 1))?;
    }
    Ok(config)
}

fn apply_keyfile_entry(config: &mut FileConfig, key: &str, value: &str) -> Result<(), String> {
    let boolean = |v: &str| match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{key}: expected true or false, got '{v}'")),
    };
    match key {
        "daemon" => config.daemon = Some(boolean(value)?),
        "method" => config.method = Some(Method::parse(value).map_err(|e| e.to_string())?),
        "path" => config.path = Some(value.to_string()),
        "logfile" => config.logfile = Some(value.into()),
        "pidfile" => config.pidfile = Some(value.into()),
        "fsfreeze-hook" => config.fsfreeze_hook = Some(value.into()),
        "statedir" => config.statedir = Some(value.into()),
        "verbose" => config.verbose = Some(boolean(value)?),
        "retry-path" => config.retry_path = Some(boolean(value)?),
        "block-rpcs" | "blacklist" => config.block_rpcs = Some(split_list(value)),
        "allow-rpcs" => config.allow_rpcs = Some(split_list(value)),
        "fsfreeze-auto-thaw" => {
            let seconds = value
                .parse()
                .map_err(|_| format!("fsfreeze-auto-thaw: expected seconds, got '{value}'"))?;
            config.fsfreeze_auto_thaw = Some(seconds);
        }
        other => return Err(format!("unknown key '{other}'")),
    }
    Ok(())
}

/// Splits a command list on `,` and `;`, dropping empty items.
pub fn split_list(value: &str) -> Vec<String> {
    value
        .split([',', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The configuration as qemu-ga's `-D` prints it: a keyfile another qemu-ga or porthole reads.
pub fn dump(config: &Config) -> String {
    let mut out = String::from("[general]\n");
    let mut line = |key: &str, value: &str| {
        out.push_str(key);
        out.push('=');
        out.push_str(value);
        out.push('\n');
    };
    line("daemon", bool_str(config.daemonize));
    if let Some(first) = config.listeners.first() {
        line("method", first.method.name());
        if let Some(path) = &first.path {
            line("path", path);
        }
    }
    if let Some(logfile) = &config.logfile {
        line("logfile", &logfile.to_string_lossy());
    }
    if let Some(pidfile) = &config.pidfile {
        line("pidfile", &pidfile.to_string_lossy());
    }
    if let Some(hook) = &config.fsfreeze_hook {
        line("fsfreeze-hook", &hook.to_string_lossy());
    }
    line("statedir", &config.statedir.to_string_lossy());
    line("verbose", bool_str(config.verbose));
    line("retry-path", bool_str(config.retry_path));
    if !config.block_rpcs.is_empty() {
        line("block-rpcs", &config.block_rpcs.join(","));
    }
    if let Some(allow) = &config.allow_rpcs {
        line("allow-rpcs", &allow.join(","));
    }
    if config.fsfreeze_auto_thaw != DEFAULT_FSFREEZE_AUTO_THAW {
        line("fsfreeze-auto-thaw", &config.fsfreeze_auto_thaw.to_string());
    }
    out
}

fn bool_str(value: bool) -> &'static str {
    if value {
        "true"
    } else {
        "false"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyfile_from_qemu_ga_applies() -> Result<(), String> {
        let file = parse_keyfile(
            "# qemu-ga\n[general]\nmethod=unix-listen\npath=/run/qga.sock\nblock-rpcs=guest-exec;guest-file-open\nverbose=true\n",
        )?;
        let mut config = Config::default();
        file.apply(&mut config).map_err(|e| e.to_string())?;
        assert_eq!(config.listeners[0].method, Method::UnixListen);
        assert_eq!(config.listeners[0].path.as_deref(), Some("/run/qga.sock"));
        assert_eq!(config.block_rpcs, vec!["guest-exec", "guest-file-open"]);
        assert!(config.verbose);
        Ok(())
    }

    #[test]
    fn toml_with_several_listeners() -> Result<(), Box<dyn std::error::Error>> {
        let file: FileConfig = toml::from_str(
            r#"
            statedir = "/var/lib/porthole"
            block-rpcs = ["guest-exec"]
            [[listen]]
            method = "virtio-serial"
            [[listen]]
            method = "vsock-listen"
            path = "-1:1234"
            "#,
        )?;
        let mut config = Config::default();
        file.apply(&mut config).map_err(|e| e.to_string())?;
        assert_eq!(config.listeners.len(), 2);
        assert_eq!(config.listeners[1].method, Method::VsockListen);
        assert_eq!(config.statedir, PathBuf::from("/var/lib/porthole"));
        Ok(())
    }

    #[test]
    fn dump_round_trips_through_the_keyfile_reader() -> Result<(), String> {
        let mut config = Config {
            block_rpcs: vec!["guest-exec".into()],
            fsfreeze_auto_thaw: 2,
            ..Config::default()
        };
        config.listeners[0].path = Some("/dev/vport0p1".into());
        let mut back = Config::default();
        parse_keyfile(&dump(&config))?
            .apply(&mut back)
            .map_err(|e| e.to_string())?;
        assert_eq!(back, config);
        Ok(())
    }

    #[test]
    fn policy_table_and_profile_shorthand() -> Result<(), Box<dyn std::error::Error>> {
        let file: FileConfig = toml::from_str(
            r#"
            profile = "hardened"
            kvmmanager-compat = true
            [policy]
            write-prefixes = ["/srv/drop"]
            exec-max-timeout = 60
            max-message = 65536
            path-resolver = "walk"
            "#,
        )?;
        let mut config = Config::default();
        file.apply(&mut config)?;
        config.add_compat_listener();
        assert_eq!(config.policy.profile, Profile::Hardened);
        assert_eq!(
            config.policy.write_prefixes,
            Some(vec![PathBuf::from("/srv/drop")])
        );
        assert_eq!(config.policy.exec_max_timeout, Some(60));
        assert_eq!(config.policy.max_message, Some(65536));
        assert!(config.policy.path_walk_only);
        assert_eq!(
            config.listeners.last().and_then(|l| l.path.as_deref()),
            Some(KVMMANAGER_PORT)
        );
        assert!(toml::from_str::<FileConfig>("[policy]\nread-prefix = []").is_err());
        Ok(())
    }

    #[test]
    fn kvmmanager_json_maps_onto_the_policy() -> Result<(), Box<dyn std::error::Error>> {
        let nested: KvmManagerConfig = serde_json::from_str(
            r#"{"log_level": "info", "channel_name": "org.kvmmanager.agent.0",
                "max_message_size_kb": 64,
                "security": {"allowed_read_paths": ["/tmp", "/var/log"],
                             "allowed_write_paths": ["/tmp/kvmmanager"],
                             "command_whitelist": null, "max_file_size_mb": 10,
                             "max_command_timeout_seconds": 300}}"#,
        )?;
        let mut config = Config::default();
        nested.apply(&mut config)?;
        let p = &config.policy;
        assert_eq!(
            p.read_prefixes,
            Some(vec!["/tmp".into(), "/var/log".into()])
        );
        assert_eq!(p.write_prefixes, Some(vec!["/tmp/kvmmanager".into()]));
        assert_eq!(p.exec_programs, None, "null whitelist allows everything");
        assert_eq!(p.file_max_size, Some(10 << 20));
        assert_eq!(p.exec_max_timeout, Some(300));
        assert_eq!(p.max_message, Some(64 << 10));
        assert_eq!(config.kvmmanager_compat.as_deref(), Some(KVMMANAGER_PORT));
        // The packaged file: keys at the top level, a switched-off whitelist.
        let flat: KvmManagerConfig = serde_json::from_str(
            r#"{"allowed_write_paths": ["/var/tmp"], "command_whitelist_enabled": false,
                "command_whitelist": ["ls"], "max_file_size_bytes": 1024}"#,
        )?;
        let mut config = Config::default();
        flat.apply(&mut config)?;
        assert_eq!(config.policy.write_prefixes, Some(vec!["/var/tmp".into()]));
        assert_eq!(config.policy.exec_programs, None);
        assert_eq!(config.policy.file_max_write, Some(1024));
        let bad: KvmManagerConfig = serde_json::from_str(r#"{"channel_name": "../x"}"#)?;
        assert!(bad.apply(&mut Config::default()).is_err());
        Ok(())
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(parse_keyfile("[general]\nfrobnicate=1\n").is_err());
        assert!(toml::from_str::<FileConfig>("frobnicate = 1").is_err());
    }
}
