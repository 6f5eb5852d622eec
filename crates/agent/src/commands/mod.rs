//! Command handlers, one module per command group, and the table that registers them.
//!
//! A new command: add its spec and typed structs to `porthole_proto::commands`, write an
//! `async fn(Arc<Agent>, Args) -> Result<Value, CommandError>` in the module of its group, and
//! add one line to [`registry`].

pub mod cpu;
pub mod diskaddr;
pub mod disks;
pub mod exec;
pub mod file;
pub mod freeze;
pub mod fsinfo;
pub mod fstrim;
pub mod kvmmanager;
pub mod memory;
pub mod network;
pub mod password;
pub mod power;
pub mod processes;
pub mod px_exec;
pub mod px_file;
pub mod sshkeys;
pub mod sysfs;
pub mod system;
pub mod telemetry;
pub mod timesync;

use crate::agent::Agent;
use crate::dispatch::Registry;
use porthole_proto::commands::{self as spec, CommandInfo, SyncArgs};
use porthole_proto::CommandError;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Arguments of a command that takes none.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// Every command porthole-agent serves, in `guest-info` order.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    r.add(spec::GUEST_SYNC_DELIMITED, sync);
    r.add(spec::GUEST_SYNC, sync);
    r.add(spec::GUEST_PING, ping);
    r.add(spec::GUEST_INFO, info);
    r.add(spec::GUEST_GET_OSINFO, system::osinfo);
    r.add(spec::GUEST_GET_HOST_NAME, system::host_name);
    r.add(spec::GUEST_GET_TIMEZONE, system::timezone);
    r.add(spec::GUEST_GET_TIME, system::get_time);
    r.add(spec::GUEST_SET_TIME, system::set_time);
    r.add(spec::GUEST_GET_USERS, system::users);
    r.add(spec::GUEST_FILE_OPEN, file::open);
    r.add_payload(spec::GUEST_FILE_READ, file::read);
    r.add(spec::GUEST_FILE_WRITE, file::write);
    r.add(spec::GUEST_FILE_SEEK, file::seek);
    r.add(spec::GUEST_FILE_FLUSH, file::flush);
    r.add(spec::GUEST_FILE_CLOSE, file::close);
    r.add(spec::GUEST_EXEC, exec::exec);
    r.add(spec::GUEST_EXEC_STATUS, exec::status);
    r.add(spec::GUEST_SHUTDOWN, power::shutdown);
    r.add(spec::GUEST_FSFREEZE_STATUS, freeze::get_status);
    r.add(spec::GUEST_FSFREEZE_FREEZE, freeze::freeze);
    r.add(spec::GUEST_FSFREEZE_FREEZE_LIST, freeze::freeze_list);
    r.add(spec::GUEST_FSFREEZE_THAW, freeze::thaw);
    r.add(spec::GUEST_FSTRIM, fstrim::fstrim);
    r.add(spec::GUEST_SUSPEND_DISK, power::suspend_disk);
    r.add(spec::GUEST_SUSPEND_RAM, power::suspend_ram);
    r.add(spec::GUEST_SUSPEND_HYBRID, power::suspend_hybrid);
    r.add(spec::GUEST_SET_USER_PASSWORD, password::set_user_password);
    r.add(spec::GUEST_SSH_GET_AUTHORIZED_KEYS, sshkeys::get);
    r.add(spec::GUEST_SSH_ADD_AUTHORIZED_KEYS, sshkeys::add);
    r.add(spec::GUEST_SSH_REMOVE_AUTHORIZED_KEYS, sshkeys::remove);
    r.add(spec::GUEST_NETWORK_GET_INTERFACES, network::get_interfaces);
    r.add(spec::GUEST_NETWORK_GET_ROUTE, network::get_route);
    r.add(spec::GUEST_GET_LOAD, cpu::get_load);
    r.add(spec::GUEST_GET_VCPUS, cpu::get_vcpus);
    r.add(spec::GUEST_SET_VCPUS, cpu::set_vcpus);
    r.add(spec::GUEST_GET_CPUSTATS, cpu::get_cpustats);
    r.add(spec::GUEST_GET_FSINFO, fsinfo::get_fsinfo);
    r.add(spec::GUEST_GET_DISKS, disks::get_disks);
    r.add(spec::GUEST_GET_DISKSTATS, disks::get_diskstats);
    r.add(spec::GUEST_GET_MEMORY_BLOCKS, memory::get_blocks);
    r.add(spec::GUEST_SET_MEMORY_BLOCKS, memory::set_blocks);
    r.add(spec::GUEST_GET_MEMORY_BLOCK_INFO, memory::block_info);
    // porthole's own extensions (docs/agent.md, "Extensions").
    r.add(spec::GUEST_PORTHOLE_EXEC, px_exec::exec);
    r.add(spec::GUEST_PORTHOLE_EXEC_OUTPUT, px_exec::output);
    r.add(spec::GUEST_PORTHOLE_EXEC_KILL, px_exec::kill);
    r.add(spec::GUEST_PORTHOLE_EXEC_STDIN, px_exec::stdin);
    r.add_payload(spec::GUEST_PORTHOLE_FILE_READ, px_file::read);
    r.add(spec::GUEST_PORTHOLE_FILE_SHA256, px_file::sha256);
    r.add(spec::GUEST_PORTHOLE_FILE_WRITE, px_file::write);
    r.add(spec::GUEST_PORTHOLE_FILE_PARTIAL, px_file::partial);
    r.add(spec::GUEST_PORTHOLE_TELEMETRY, telemetry::telemetry);
    r.add(spec::GUEST_PORTHOLE_PROCESSES, processes::processes);
    r.add(spec::GUEST_PORTHOLE_SERVICES, processes::services);
    r.add(
        spec::GUEST_PORTHOLE_SERVICE_STATUS,
        processes::service_status,
    );
    r.add(spec::GUEST_PORTHOLE_TIME_SYNC, timesync::time_sync);
    kvmmanager::register(&mut r);
    r
}

/// guest-sync and guest-sync-delimited: echo the id (the session adds the 0xFF delimiter).
async fn sync(_agent: Arc<Agent>, args: SyncArgs) -> Result<Value, CommandError> {
    Ok(json!(args.id))
}

async fn ping(_agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    Ok(json!({}))
}

async fn info(agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    // While frozen, the commands refused for that reason are listed as disabled (as qemu-ga).
    let commands: Vec<CommandInfo> = agent
        .commands
        .iter()
        .map(|c| CommandInfo {
            enabled: c.enabled && freeze::enabled_now(&agent, &c.name),
            ..c.clone()
        })
        .collect();
    Ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "supported_commands": commands,
    }))
}

/// Serializes a typed reply.
pub fn to_value<T: serde::Serialize>(value: T) -> Result<Value, CommandError> {
    serde_json::to_value(value).map_err(|e| CommandError::internal(e.to_string()))
}

/// Runs blocking work (file I/O, spawning helpers) off the async threads.
pub async fn blocking<F, T>(work: F) -> Result<T, CommandError>
where
    F: FnOnce() -> Result<T, CommandError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CommandError::internal(format!("worker failed: {e}")))?
}

/// strerror(3)'s text for an I/O error, as qemu-ga prints it (no "(os error N)" suffix).
pub fn errno_text(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => strerror(code),
        None => error.to_string(),
    }
}

/// The C library's strerror(3) text for `errno` (std asks strerror_r; nix's own table words some
/// errors differently, e.g. EBADF, and scripts match qemu-ga's glibc texts).
pub fn strerror(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}
