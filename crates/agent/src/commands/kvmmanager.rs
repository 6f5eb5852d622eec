//! The JSON-RPC 2.0 method names of the KVM Manager guest agent API (`ping`, `get_system_info`,
//! `exec_command`, `file_read`, ...), so its hosts can talk to porthole-agent unchanged.
//!
//! It lives among the command groups because each method is an ordinary registry entry (schema,
//! typed arguments, handler) built on the existing handlers — osinfo, network, fsinfo, exec,
//! power — and on the policy's file API: only the reply shapes are this API's own. Every method
//! is gated as itself and as the QGA command it rides on ([`METHODS`]), so `-b guest-exec` or
//! the hardened profile also refuse `exec_command`; guest-info does not list them.
//!
//! Errors map to the API's codes through the error kind: -32000 command failed, -32001
//! permission denied (every policy refusal), -32002 not found, -32003 timeout.

use super::file::decode_base64;
use super::{blocking, cpu, fsinfo, network, power, system, NoArgs};
use crate::agent::Agent;
use crate::dispatch::Registry;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use porthole_proto::commands::{
    CommandSpec, ExecArgs, FilesystemInfo, HostName, NetworkInterface, OsInfo, ShutdownArgs,
};
use porthole_proto::schema::{Param, Type};
use porthole_proto::CommandError;
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The version of the KVM Manager protocol these methods follow.
pub const PROTOCOL_VERSION: &str = "1.0.0";
/// exec_command's timeout when the request gives none (the API's default).
pub const DEFAULT_EXEC_TIMEOUT: u64 = 30;
/// The longest timeout a request may ask for, whatever the policy (one day).
pub const MAX_EXEC_TIMEOUT: u64 = 86_400;

const fn method(name: &'static str, params: &'static [Param]) -> CommandSpec {
    CommandSpec {
        name,
        params,
        success_response: true,
    }
}

const POWER: &[Param] = &[
    Param::optional("timeout_seconds", Type::Int),
    Param::optional("force", Type::Bool),
];
const ENCODING: Type = Type::Enum(&["utf8", "base64"]);

pub const PING: CommandSpec = method("ping", &[]);
pub const GET_AGENT_INFO: CommandSpec = method("get_agent_info", &[]);
pub const GET_SYSTEM_INFO: CommandSpec = method("get_system_info", &[]);
pub const GET_NETWORK_INFO: CommandSpec = method("get_network_info", &[]);
pub const GET_DISK_USAGE: CommandSpec = method("get_disk_usage", &[]);
pub const EXEC_COMMAND: CommandSpec = method(
    "exec_command",
    &[
        Param::required("command", Type::Str),
        Param::optional("args", Type::List(&Type::Str)),
        Param::optional("timeout_seconds", Type::Int),
        Param::optional("capture_output", Type::Bool),
        Param::optional("working_directory", Type::Str),
        Param::optional("env", Type::Any),
        Param::optional("input", Type::Str),
    ],
);
pub const FILE_READ: CommandSpec = method(
    "file_read",
    &[
        Param::required("path", Type::Str),
        Param::optional("encoding", ENCODING),
    ],
);
pub const FILE_WRITE: CommandSpec = method(
    "file_write",
    &[
        Param::required("path", Type::Str),
        Param::required("content", Type::Str),
        Param::optional("encoding", ENCODING),
        Param::optional("create_dirs", Type::Bool),
        Param::optional("permissions", Type::Str),
        Param::optional("append", Type::Bool),
    ],
);
pub const SHUTDOWN: CommandSpec = method("shutdown", POWER);
pub const REBOOT: CommandSpec = method("reboot", POWER);

/// Each method and the QGA commands it is also gated as.
pub const METHODS: &[(&str, &[&str])] = &[
    ("ping", &["guest-ping"]),
    ("get_agent_info", &["guest-info"]),
    ("get_system_info", &["guest-get-osinfo"]),
    ("get_network_info", &["guest-network-get-interfaces"]),
    ("get_disk_usage", &["guest-get-fsinfo"]),
    ("exec_command", &["guest-exec"]),
    ("file_read", &["guest-file-open", "guest-file-read"]),
    ("file_write", &["guest-file-open", "guest-file-write"]),
    ("shutdown", &["guest-shutdown"]),
    ("reboot", &["guest-shutdown"]),
];

fn rides_on(name: &str) -> &'static [&'static str] {
    METHODS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&[], |(_, qga)| *qga)
}

/// Adds the methods to the registry.
pub fn register(r: &mut Registry) {
    r.add_method(PING, rides_on("ping"), ping);
    r.add_method(GET_AGENT_INFO, rides_on("get_agent_info"), agent_info);
    r.add_method(GET_SYSTEM_INFO, rides_on("get_system_info"), system_info);
    r.add_method(GET_NETWORK_INFO, rides_on("get_network_info"), network_info);
    r.add_method(GET_DISK_USAGE, rides_on("get_disk_usage"), disk_usage);
    r.add_method(EXEC_COMMAND, rides_on("exec_command"), exec_command);
    r.add_method(FILE_READ, rides_on("file_read"), file_read);
    r.add_method(FILE_WRITE, rides_on("file_write"), file_write);
    r.add_method(SHUTDOWN, rides_on("shutdown"), shutdown);
    r.add_method(REBOOT, rides_on("reboot"), reboot);
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn ping(_agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    Ok(json!({"pong": true, "timestamp": unix_now()}))
}

async fn agent_info(agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    let capabilities: Vec<&str> = METHODS
        .iter()
        .filter(|(name, qga)| agent.policy.command_enabled_as(name, qga))
        .map(|(name, _)| *name)
        .collect();
    Ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "protocol_version": PROTOCOL_VERSION,
        "platform": "linux",
        "agent": "porthole-agent",
        "capabilities": capabilities,
        "policy_profile": agent.policy.profile().name(),
        "policy_refusals": agent.policy.refusals(),
    }))
}

fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, CommandError> {
    serde_json::from_value(value).map_err(|e| CommandError::internal(e.to_string()))
}

async fn system_info(agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    let os: OsInfo = from_value(system::osinfo(agent.clone(), NoArgs {}).await?)?;
    let host: HostName = from_value(system::host_name(agent.clone(), NoArgs {}).await?)?;
    let (cpus, memory_kb, uptime) = blocking(|| {
        let cpus = cpu::list_vcpus(Path::new(cpu::CPU_DIR))
            .map(|list| list.iter().filter(|c| c.online).count())
            .unwrap_or(0);
        let meminfo =
            super::sysfs::read_text(Path::new("/proc/meminfo"), 64 << 10).unwrap_or_default();
        let uptime = super::sysfs::read_text(Path::new("/proc/uptime"), 4096).unwrap_or_default();
        Ok((cpus, mem_total_kb(&meminfo), uptime_seconds(&uptime)))
    })
    .await?;
    Ok(json!({
        "os_type": "linux",
        "os_name": os.name.or(os.id.clone()),
        "os_id": os.id,
        "os_version": os.version.or(os.version_id),
        "pretty_name": os.pretty_name,
        "kernel_version": os.kernel_release,
        "hostname": host.host_name,
        "architecture": os.machine,
        "cpu_count": cpus,
        "total_memory_kb": memory_kb,
        "uptime_seconds": uptime,
    }))
}

/// `MemTotal:  16318384 kB` from /proc/meminfo.
pub fn mem_total_kb(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The first number of /proc/uptime, whole seconds.
pub fn uptime_seconds(text: &str) -> Option<u64> {
    let first = text.split_whitespace().next()?;
    first.split('.').next()?.parse().ok()
}

async fn network_info(agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    let list: Vec<NetworkInterface> = from_value(network::get_interfaces(agent, NoArgs {}).await?)?;
    blocking(move || {
        let interfaces: Vec<Value> = list.iter().map(interface).collect();
        Ok(json!({ "interfaces": interfaces }))
    })
    .await
}

fn interface(i: &NetworkInterface) -> Value {
    let addresses = |kind: &str| -> Vec<String> {
        i.ip_addresses
            .iter()
            .flatten()
            .filter(|a| a.ip_address_type == kind)
            .map(|a| format!("{}/{}", a.ip_address, a.prefix))
            .collect()
    };
    // Interface names never hold '/', but the name came from the kernel through a table
    // lookup: refuse anything that could leave /sys/class/net.
    let sys = (!i.name.contains('/') && !i.name.starts_with('.'))
        .then(|| PathBuf::from("/sys/class/net").join(&i.name));
    let read = |file: &str| {
        sys.as_ref()
            .and_then(|dir| super::sysfs::read_text(&dir.join(file), 256).ok())
            .map(|t| t.trim().to_string())
    };
    json!({
        "name": i.name,
        "mac_address": i.hardware_address,
        "ipv4_addresses": addresses("ipv4"),
        "ipv6_addresses": addresses("ipv6"),
        "state": read("operstate"),
        "mtu": read("mtu").and_then(|m| m.parse::<u32>().ok()),
    })
}

async fn disk_usage(agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    let list: Vec<FilesystemInfo> = from_value(fsinfo::get_fsinfo(agent, NoArgs {}).await?)?;
    let filesystems: Vec<Value> = list
        .iter()
        .map(|fs| {
            let used = fs.used_bytes.unwrap_or(0);
            let total = fs.total_bytes.unwrap_or(0);
            let percent = if total == 0 {
                0.0
            } else {
                (used as f64 * 1000.0 / total as f64).round() / 10.0
            };
            json!({
                "mount_point": fs.mountpoint,
                "device": format!("/dev/{}", fs.name),
                "fs_type": fs.r#type,
                "total_bytes": total,
                "used_bytes": used,
                "available_bytes": total.saturating_sub(used),
                "used_percent": percent,
            })
        })
        .collect();
    Ok(json!({ "filesystems": filesystems }))
}

#[derive(Debug, Deserialize)]
struct ExecCommandArgs {
    command: String,
    #[serde(default)]
    args: Vec<String>,
    timeout_seconds: Option<i64>,
    capture_output: Option<bool>,
    working_directory: Option<String>,
    env: Option<Value>,
    /// Standard input, base64.
    input: Option<String>,
}

/// `env` as guest-exec's `KEY=value` list: an object of strings, or such a list.
fn env_list(env: Option<Value>) -> Result<Option<Vec<String>>, CommandError> {
    let bad = || {
        CommandError::invalid_params(
            "env must be an object of strings or a list of KEY=value strings",
        )
    };
    match env {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(v) if !k.contains('=') => Ok(format!("{k}={v}")),
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) if s.contains('=') => Ok(s),
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad()),
    }
}

async fn exec_command(agent: Arc<Agent>, args: ExecCommandArgs) -> Result<Value, CommandError> {
    // Without a timeout in the request: the API's default, within the policy's maximum.
    let default = agent
        .policy
        .exec
        .max_timeout
        .map_or(DEFAULT_EXEC_TIMEOUT, |max| {
            max.as_secs().clamp(1, DEFAULT_EXEC_TIMEOUT)
        });
    let seconds = args.timeout_seconds.unwrap_or(default as i64);
    let seconds = u64::try_from(seconds)
        .ok()
        .filter(|s| (1..=MAX_EXEC_TIMEOUT).contains(s))
        .ok_or_else(|| {
            CommandError::invalid_params(format!(
                "timeout_seconds must be 1..={MAX_EXEC_TIMEOUT}, got {seconds}"
            ))
        })?;
    let exec = ExecArgs {
        path: args.command,
        arg: Some(args.args),
        env: env_list(args.env)?,
        input_data: args.input,
        capture_output: None,
    };
    let cwd = args.working_directory.map(PathBuf::from);
    let done =
        super::exec::run(&agent, &exec, cwd.as_deref(), Duration::from_secs(seconds)).await?;
    let capture = args.capture_output.unwrap_or(true);
    let text = |bytes: &[u8]| {
        if capture {
            String::from_utf8_lossy(bytes).into_owned()
        } else {
            String::new()
        }
    };
    Ok(json!({
        "exit_code": done.status.code().unwrap_or(-1),
        "signal": done.status.signal(),
        "stdout": text(&done.stdout),
        "stderr": text(&done.stderr),
        "stdout_truncated": capture && done.stdout_truncated,
        "stderr_truncated": capture && done.stderr_truncated,
        "execution_time_ms": u64::try_from(done.elapsed.as_millis()).unwrap_or(u64::MAX),
    }))
}

#[derive(Debug, Deserialize)]
struct FileReadArgs {
    path: String,
    encoding: Option<String>,
}

async fn file_read(agent: Arc<Agent>, args: FileReadArgs) -> Result<Value, CommandError> {
    blocking(move || {
        let policy = &agent.policy;
        let file = policy.open_for_read(&args.path)?;
        let failed = |e: std::io::Error| {
            CommandError::failed(format!(
                "failed to read file '{}': {}",
                args.path,
                super::errno_text(&e)
            ))
        };
        let meta = file.metadata().map_err(failed)?;
        if meta.is_dir() {
            return Err(CommandError::failed(format!(
                "'{}' is a directory",
                args.path
            )));
        }
        policy.check_read_size(meta.len())?;
        // The size may grow while reading (or lie, for /proc files): read one byte past the cap.
        let cap = policy.files.max_read as u64;
        let mut data = Vec::new();
        file.take(cap.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(failed)?;
        policy.check_read_size(data.len() as u64)?;
        let encoding = args.encoding.unwrap_or_else(|| "utf8".into());
        let content = if encoding == "base64" {
            BASE64.encode(&data)
        } else {
            String::from_utf8_lossy(&data).into_owned()
        };
        Ok(json!({"content": content, "size_bytes": data.len(), "encoding": encoding}))
    })
    .await
}

#[derive(Debug, Deserialize)]
struct FileWriteArgs {
    path: String,
    content: String,
    encoding: Option<String>,
    create_dirs: Option<bool>,
    permissions: Option<String>,
    append: Option<bool>,
}

/// An octal mode such as `0644`; at most 0o7777.
fn parse_permissions(text: &str) -> Result<nix::sys::stat::Mode, CommandError> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|m| !text.is_empty() && text.len() <= 5 && *m <= 0o7777)
        .map(nix::sys::stat::Mode::from_bits_truncate)
        .ok_or_else(|| {
            CommandError::invalid_params(format!(
                "permissions must be an octal mode such as 0644, got '{text}'"
            ))
        })
}

async fn file_write(agent: Arc<Agent>, args: FileWriteArgs) -> Result<Value, CommandError> {
    blocking(move || {
        let policy = &agent.policy;
        let data = match args.encoding.as_deref() {
            Some("base64") => decode_base64(&args.content)?,
            _ => args.content.into_bytes(),
        };
        let mode = args
            .permissions
            .as_deref()
            .map(parse_permissions)
            .transpose()?;
        let append = args.append.unwrap_or(false);
        let len = data.len() as u64;
        if !append {
            // Before the open truncates anything.
            policy.check_write_size(len, len)?;
        }
        if args.create_dirs.unwrap_or(false) {
            if let Some(parent) = Path::new(&args.path).parent() {
                policy.create_dirs_for_write(parent)?;
            }
        }
        let mut file = policy.open_for_write(&args.path, append)?;
        let failed = |e: std::io::Error| {
            CommandError::failed(format!(
                "failed to write file '{}': {}",
                args.path,
                super::errno_text(&e)
            ))
        };
        if append {
            let size = file.metadata().map_err(failed)?.len();
            policy.check_write_size(len, size.saturating_add(len))?;
        }
        if let Some(mode) = mode {
            nix::sys::stat::fchmod(&file, mode).map_err(|e| failed(std::io::Error::from(e)))?;
        }
        file.write_all(&data).map_err(failed)?;
        Ok(json!({"bytes_written": data.len(), "path": args.path}))
    })
    .await
}

#[derive(Debug, Deserialize)]
struct PowerArgs {
    #[allow(dead_code)]
    timeout_seconds: Option<i64>,
    #[allow(dead_code)]
    force: Option<bool>,
}

async fn power_off(agent: Arc<Agent>, mode: &str, what: &str) -> Result<Value, CommandError> {
    let args = ShutdownArgs {
        mode: Some(mode.to_string()),
    };
    power::shutdown(agent, args).await?;
    Ok(json!({"initiated": true, "message": format!("{what} initiated")}))
}

async fn shutdown(agent: Arc<Agent>, _args: PowerArgs) -> Result<Value, CommandError> {
    power_off(agent, "powerdown", "Shutdown").await
}

async fn reboot(agent: Arc<Agent>, _args: PowerArgs) -> Result<Value, CommandError> {
    power_off(agent, "reboot", "Reboot").await
}

#[cfg(test)]
mod tests {
    use super::*;
    use porthole_proto::ErrorKind;

    #[test]
    fn proc_parsers() {
        assert_eq!(
            mem_total_kb("MemTotal:       16318384 kB\nMemFree: 1 kB\n"),
            Some(16318384)
        );
        assert_eq!(mem_total_kb("garbage"), None);
        assert_eq!(uptime_seconds("12345.67 999.00\n"), Some(12345));
        assert_eq!(uptime_seconds(""), None);
    }

    #[test]
    fn env_and_permissions() {
        assert_eq!(
            env_list(Some(json!({"A": "1"}))).ok().flatten(),
            Some(vec!["A=1".to_string()])
        );
        assert!(env_list(Some(json!({"A": 1}))).is_err());
        assert!(env_list(Some(json!(["NOEQUALS"]))).is_err());
        assert!(parse_permissions("0644").is_ok());
        assert!(parse_permissions("9").is_err());
        assert!(parse_permissions("077777").is_err());
        assert!(parse_permissions("").is_err());
    }

    #[test]
    fn every_method_rides_on_a_qga_command() {
        let mut registry = Registry::default();
        register(&mut registry);
        let methods: Vec<_> = registry.methods().collect();
        assert_eq!(methods.len(), METHODS.len());
        assert!(methods.iter().all(|(_, qga)| !qga.is_empty()));
        assert_eq!(ErrorKind::PermissionDenied.jsonrpc_code(), -32001);
    }
}
