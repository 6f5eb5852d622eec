//! The commands: their names, argument schemas and typed argument/return structures.
//!
//! Names and member names follow qemu's qga/qapi-schema.json (kebab-case). The host client uses
//! the same structures to build requests and read replies, so both ends agree by construction.
//! A [`CommandSpec`] pairs a name with its argument schema and whether it replies on success;
//! the agent registers a handler for each spec it implements.

use crate::schema::{Param, Type};
use serde::{Deserialize, Serialize};

/// A command's identity as `guest-info` reports it, and its argument schema.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    pub name: &'static str,
    pub params: &'static [Param],
    /// False for commands that send nothing on success (guest-shutdown, guest-suspend-*).
    pub success_response: bool,
}

const fn spec(name: &'static str, params: &'static [Param]) -> CommandSpec {
    CommandSpec {
        name,
        params,
        success_response: true,
    }
}

const ID: &[Param] = &[Param::required("id", Type::Int)];
const HANDLE: &[Param] = &[Param::required("handle", Type::Int)];
const NONE: &[Param] = &[];

pub const GUEST_SYNC: CommandSpec = spec("guest-sync", ID);
pub const GUEST_SYNC_DELIMITED: CommandSpec = spec("guest-sync-delimited", ID);
pub const GUEST_PING: CommandSpec = spec("guest-ping", NONE);
pub const GUEST_INFO: CommandSpec = spec("guest-info", NONE);
pub const GUEST_GET_OSINFO: CommandSpec = spec("guest-get-osinfo", NONE);
pub const GUEST_GET_HOST_NAME: CommandSpec = spec("guest-get-host-name", NONE);
pub const GUEST_GET_TIMEZONE: CommandSpec = spec("guest-get-timezone", NONE);
pub const GUEST_GET_TIME: CommandSpec = spec("guest-get-time", NONE);
pub const GUEST_SET_TIME: CommandSpec =
    spec("guest-set-time", &[Param::optional("time", Type::Int)]);
pub const GUEST_GET_USERS: CommandSpec = spec("guest-get-users", NONE);
pub const GUEST_FILE_OPEN: CommandSpec = spec(
    "guest-file-open",
    &[
        Param::required("path", Type::Str),
        Param::optional("mode", Type::Str),
    ],
);
pub const GUEST_FILE_READ: CommandSpec = spec(
    "guest-file-read",
    &[
        Param::required("handle", Type::Int),
        Param::optional("count", Type::Int),
    ],
);
pub const GUEST_FILE_WRITE: CommandSpec = spec(
    "guest-file-write",
    &[
        Param::required("handle", Type::Int),
        Param::required("buf-b64", Type::Str),
        Param::optional("count", Type::Int),
    ],
);
pub const GUEST_FILE_SEEK: CommandSpec = spec(
    "guest-file-seek",
    &[
        Param::required("handle", Type::Int),
        Param::required("offset", Type::Int),
        Param::required(
            "whence",
            Type::Alternate {
                name: "GuestFileWhence",
                branches: &[Type::Int, Type::Enum(&["set", "cur", "end"])],
            },
        ),
    ],
);
pub const GUEST_FILE_FLUSH: CommandSpec = spec("guest-file-flush", HANDLE);
pub const GUEST_FILE_CLOSE: CommandSpec = spec("guest-file-close", HANDLE);
pub const GUEST_EXEC: CommandSpec = spec(
    "guest-exec",
    &[
        Param::required("path", Type::Str),
        Param::optional("arg", Type::List(&Type::Str)),
        Param::optional("env", Type::List(&Type::Str)),
        Param::optional("input-data", Type::Str),
        Param::optional(
            "capture-output",
            Type::Alternate {
                name: "GuestExecCaptureOutput",
                branches: &[
                    Type::Bool,
                    Type::Enum(&["none", "stdout", "stderr", "separated", "merged"]),
                ],
            },
        ),
    ],
);
pub const GUEST_EXEC_STATUS: CommandSpec =
    spec("guest-exec-status", &[Param::required("pid", Type::Int)]);
pub const GUEST_SHUTDOWN: CommandSpec = CommandSpec {
    name: "guest-shutdown",
    params: &[Param::optional("mode", Type::Str)],
    success_response: false,
};
pub const GUEST_FSFREEZE_STATUS: CommandSpec = spec("guest-fsfreeze-status", NONE);
pub const GUEST_FSFREEZE_FREEZE: CommandSpec = spec("guest-fsfreeze-freeze", NONE);
pub const GUEST_FSFREEZE_FREEZE_LIST: CommandSpec = spec(
    "guest-fsfreeze-freeze-list",
    &[Param::optional("mountpoints", Type::List(&Type::Str))],
);
pub const GUEST_FSFREEZE_THAW: CommandSpec = spec("guest-fsfreeze-thaw", NONE);
pub const GUEST_FSTRIM: CommandSpec =
    spec("guest-fstrim", &[Param::optional("minimum", Type::Int)]);
pub const GUEST_SET_USER_PASSWORD: CommandSpec = spec(
    "guest-set-user-password",
    &[
        Param::required("username", Type::Str),
        Param::required("password", Type::Str),
        Param::required("crypted", Type::Bool),
    ],
);
const USERNAME: &[Param] = &[Param::required("username", Type::Str)];
pub const GUEST_SSH_GET_AUTHORIZED_KEYS: CommandSpec =
    spec("guest-ssh-get-authorized-keys", USERNAME);
pub const GUEST_SSH_ADD_AUTHORIZED_KEYS: CommandSpec = spec(
    "guest-ssh-add-authorized-keys",
    &[
        Param::required("username", Type::Str),
        Param::required("keys", Type::List(&Type::Str)),
        Param::optional("reset", Type::Bool),
    ],
);
pub const GUEST_SSH_REMOVE_AUTHORIZED_KEYS: CommandSpec = spec(
    "guest-ssh-remove-authorized-keys",
    &[
        Param::required("username", Type::Str),
        Param::required("keys", Type::List(&Type::Str)),
    ],
);
const fn silent(name: &'static str) -> CommandSpec {
    CommandSpec {
        name,
        params: NONE,
        success_response: false,
    }
}
pub const GUEST_SUSPEND_DISK: CommandSpec = silent("guest-suspend-disk");
pub const GUEST_SUSPEND_RAM: CommandSpec = silent("guest-suspend-ram");
pub const GUEST_SUSPEND_HYBRID: CommandSpec = silent("guest-suspend-hybrid");
pub const GUEST_NETWORK_GET_INTERFACES: CommandSpec = spec("guest-network-get-interfaces", NONE);
pub const GUEST_NETWORK_GET_ROUTE: CommandSpec = spec("guest-network-get-route", NONE);
pub const GUEST_GET_LOAD: CommandSpec = spec("guest-get-load", NONE);
pub const GUEST_GET_VCPUS: CommandSpec = spec("guest-get-vcpus", NONE);
const LOGICAL_PROCESSOR: &[Param] = &[
    Param::required("logical-id", Type::Int),
    Param::required("online", Type::Bool),
    Param::optional("can-offline", Type::Bool),
];
pub const GUEST_SET_VCPUS: CommandSpec = spec(
    "guest-set-vcpus",
    &[Param::required(
        "vcpus",
        Type::List(&Type::Object(LOGICAL_PROCESSOR)),
    )],
);
pub const GUEST_GET_CPUSTATS: CommandSpec = spec("guest-get-cpustats", NONE);
pub const GUEST_GET_FSINFO: CommandSpec = spec("guest-get-fsinfo", NONE);
pub const GUEST_GET_DISKS: CommandSpec = spec("guest-get-disks", NONE);
pub const GUEST_GET_DISKSTATS: CommandSpec = spec("guest-get-diskstats", NONE);
pub const GUEST_GET_MEMORY_BLOCKS: CommandSpec = spec("guest-get-memory-blocks", NONE);
const MEMORY_BLOCK: &[Param] = &[
    Param::required("phys-index", Type::U64),
    Param::required("online", Type::Bool),
    Param::optional("can-offline", Type::Bool),
];
pub const GUEST_SET_MEMORY_BLOCKS: CommandSpec = spec(
    "guest-set-memory-blocks",
    &[Param::required(
        "mem-blks",
        Type::List(&Type::Object(MEMORY_BLOCK)),
    )],
);
pub const GUEST_GET_MEMORY_BLOCK_INFO: CommandSpec = spec("guest-get-memory-block-info", NONE);

/// `guest-sync` / `guest-sync-delimited`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncArgs {
    pub id: i64,
}

/// One entry of `guest-info`'s `supported_commands`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandInfo {
    pub name: String,
    pub enabled: bool,
    #[serde(rename = "success-response")]
    pub success_response: bool,
}

/// `guest-info`'s reply (qemu spells `supported_commands` with an underscore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub version: String,
    pub supported_commands: Vec<CommandInfo>,
}

/// `guest-get-osinfo`'s reply; every member is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct OsInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_release: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct HostName {
    pub host_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timezone {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Seconds east of UTC.
    pub offset: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SetTimeArgs {
    /// Nanoseconds since the epoch; absent means "set the system clock from the RTC".
    pub time: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct User {
    pub user: String,
    /// Seconds since the epoch, with fraction.
    pub login_time: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileOpenArgs {
    pub path: String,
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct HandleArgs {
    pub handle: i64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct FileReadArgs {
    pub handle: i64,
    pub count: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FileRead {
    pub count: u64,
    pub buf_b64: String,
    pub eof: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FileWriteArgs {
    pub handle: i64,
    pub buf_b64: String,
    pub count: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileWrite {
    pub count: u64,
    pub eof: bool,
}

/// `whence`: a number (0 set, 1 cur, 2 end) or its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Whence {
    Code(i64),
    Name(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileSeekArgs {
    pub handle: i64,
    pub offset: i64,
    pub whence: Whence,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSeek {
    pub position: u64,
    pub eof: bool,
}

/// `capture-output`: a boolean (qemu ≤ 8.0) or a mode name (qemu 8.1+).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CaptureOutput {
    Flag(bool),
    Mode(String),
}

/// Which of a child's output streams are captured, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureMode {
    None,
    Stdout,
    Stderr,
    /// Both, each in its own buffer (`capture-output: true`).
    Separated,
    /// stderr into the stdout buffer.
    Merged,
}

impl CaptureOutput {
    pub fn mode(&self) -> CaptureMode {
        match self {
            CaptureOutput::Flag(false) => CaptureMode::None,
            CaptureOutput::Flag(true) => CaptureMode::Separated,
            CaptureOutput::Mode(name) => match name.as_str() {
                "stdout" => CaptureMode::Stdout,
                "stderr" => CaptureMode::Stderr,
                "separated" => CaptureMode::Separated,
                "merged" => CaptureMode::Merged,
                _ => CaptureMode::None,
            },
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ExecArgs {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_output: Option<CaptureOutput>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecStarted {
    pub pid: i64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ExecStatusArgs {
    pub pid: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ExecStatus {
    pub exited: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exitcode: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub err_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub err_truncated: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShutdownArgs {
    pub mode: Option<String>,
}

/// `guest-fsfreeze-status`'s reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsfreezeStatus {
    Thawed,
    Frozen,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FreezeListArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoints: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FstrimArgs {
    /// Minimum contiguous free range to discard, in bytes (FITRIM's `minlen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<i64>,
}

/// What guest-fstrim did on one mount: `trimmed` and `minimum` on success, `error` otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FstrimPath {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trimmed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `guest-fstrim`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FstrimResult {
    pub paths: Vec<FstrimPath>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetUserPasswordArgs {
    pub username: String,
    /// The password (or crypt(3) hash when `crypted`), base64-encoded.
    pub password: String,
    pub crypted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshUserArgs {
    pub username: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshAddKeysArgs {
    pub username: String,
    pub keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshRemoveKeysArgs {
    pub username: String,
    pub keys: Vec<String>,
}

/// `guest-ssh-get-authorized-keys`' reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizedKeys {
    pub keys: Vec<String>,
}

/// One address of a network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IpAddress {
    pub ip_address: String,
    /// `ipv4` or `ipv6`.
    pub ip_address_type: String,
    pub prefix: i64,
}

/// An interface's counters, from /proc/net/dev.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InterfaceStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errs: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errs: u64,
    pub tx_dropped: u64,
}

/// One entry of `guest-network-get-interfaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NetworkInterface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_address: Option<String>,
    /// Present only when the interface has at least one IPv4/IPv6 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_addresses: Option<Vec<IpAddress>>,
    /// Present only when `ip-addresses` is (qemu-ga reads them together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistics: Option<InterfaceStats>,
}

/// One entry of `guest-network-get-route` (qemu 9.1). IPv4 routes carry gateway, mask, mtu,
/// window and irtt; IPv6 routes carry desprefixlen, source, srcprefixlen and nexthop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NetworkRoute {
    pub iface: String,
    pub destination: String,
    pub metric: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irtt: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refcnt: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#use: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desprefixlen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srcprefixlen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nexthop: Option<String>,
    /// 4 or 6.
    pub version: i64,
}

/// `guest-get-load`'s reply (qemu 9.1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoadAverage {
    pub load1m: f64,
    pub load5m: f64,
    pub load15m: f64,
}

/// A logical CPU: `guest-get-vcpus` reports them, `guest-set-vcpus` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LogicalProcessor {
    pub logical_id: i64,
    pub online: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_offline: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetVcpusArgs {
    pub vcpus: Vec<LogicalProcessor>,
}

/// One CPU's times from /proc/stat, in milliseconds (qemu's `GuestLinuxCpuStats`, tagged
/// `"type": "linux"`). The optional members depend on how many columns the kernel writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxCpuStats {
    pub cpu: i64,
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iowait: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub softirq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steal: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guestnice: Option<u64>,
}

/// One entry of `guest-get-cpustats`: a union discriminated by `type` (only `linux` exists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CpuStats {
    Linux(LinuxCpuStats),
}

/// A PCI address; -1 in every member means "not a PCI device".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciAddress {
    pub domain: i64,
    pub bus: i64,
    pub slot: i64,
    pub function: i64,
}

impl PciAddress {
    pub const INVALID: PciAddress = PciAddress {
        domain: -1,
        bus: -1,
        slot: -1,
        function: -1,
    };
}

/// An s390 channel-subsystem address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CcwAddress {
    pub cssid: i64,
    pub ssid: i64,
    pub subchno: i64,
    pub devno: i64,
}

/// Where a disk sits: its controller, bus type and bus/target/unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DiskAddress {
    pub pci_controller: PciAddress,
    /// qemu's `GuestDiskBusType`: ide, scsi, virtio, sata, nvme, unknown, ...
    pub bus_type: String,
    pub bus: i64,
    pub target: i64,
    pub unit: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ccw_address: Option<CcwAddress>,
}

/// One mounted filesystem of `guest-get-fsinfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FilesystemInfo {
    pub name: String,
    pub mountpoint: String,
    pub r#type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    /// Bytes usable by unprivileged users (used + available), as qemu-ga 7.2 computes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    pub disk: Vec<DiskAddress>,
}

/// One disk or partition of `guest-get-disks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DiskInfo {
    pub name: String,
    pub partition: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<DiskAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

/// A block device's counters from /proc/diskstats; which are present depends on the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DiskStats {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_sectors: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_ios: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_merges: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_sectors: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_ios: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_merges: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard_sectors: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard_ios: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard_merges: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_ios: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_ticks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_ticks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard_ticks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_ticks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ios_pgr: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ticks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_ticks: Option<u64>,
}

/// One entry of `guest-get-diskstats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskStatsInfo {
    pub name: String,
    pub major: u64,
    pub minor: u64,
    pub stats: DiskStats,
}

/// A memory block: `guest-get-memory-blocks` reports them, `guest-set-memory-blocks` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MemoryBlock {
    /// qemu's uint64 also accepts negative integers (two's complement), so the host may send -1.
    #[serde(deserialize_with = "wrapping_u64")]
    pub phys_index: u64,
    pub online: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_offline: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SetMemoryBlocksArgs {
    pub mem_blks: Vec<MemoryBlock>,
}

/// What `guest-set-memory-blocks` did with one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryBlockResponseType {
    Success,
    NotFound,
    OperationNotSupported,
    OperationFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MemoryBlockResponse {
    pub phys_index: u64,
    pub response: MemoryBlockResponseType,
    /// The errno of the failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
}

/// `guest-get-memory-block-info`'s reply: the block size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryBlockInfo {
    pub size: u64,
}

/// A JSON integer as u64, negative values wrapping as qemu's uint64 visitor does.
fn wrapping_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Unsigned(u64),
        Signed(i64),
    }
    Ok(match Int::deserialize(d)? {
        Int::Unsigned(n) => n,
        Int::Signed(n) => n as u64,
    })
}

// ---------------------------------------------------------------------------------------------
// porthole's own extensions, all named `guest-porthole-*` (docs/agent.md, "Extensions").

/// The prefix of every porthole extension command.
pub const PORTHOLE_PREFIX: &str = "guest-porthole-";

const FINAL: &[Param] = &[
    Param::required("sha256", Type::Str),
    Param::optional("mode", Type::Int),
    Param::optional("owner", Type::Str),
    Param::optional("group", Type::Str),
];
const PATH: &[Param] = &[Param::required("path", Type::Str)];

pub const GUEST_PORTHOLE_EXEC: CommandSpec = spec(
    "guest-porthole-exec",
    &[
        Param::required("path", Type::Str),
        Param::optional("arg", Type::List(&Type::Str)),
        Param::optional("env", Type::List(&Type::Str)),
        Param::optional("cwd", Type::Str),
        Param::optional("user", Type::Str),
        Param::optional("group", Type::Str),
        Param::optional("supplementary-groups", Type::List(&Type::Str)),
        Param::optional("input-data", Type::Str),
        Param::optional("timeout-ms", Type::Int),
        Param::optional("stream", Type::Bool),
    ],
);
pub const GUEST_PORTHOLE_EXEC_OUTPUT: CommandSpec = spec(
    "guest-porthole-exec-output",
    &[
        Param::required("handle", Type::Int),
        Param::optional("max-bytes", Type::Int),
    ],
);
pub const GUEST_PORTHOLE_EXEC_KILL: CommandSpec = spec(
    "guest-porthole-exec-kill",
    &[
        Param::required("handle", Type::Int),
        Param::optional("signal", Type::Int),
    ],
);
pub const GUEST_PORTHOLE_EXEC_STDIN: CommandSpec = spec(
    "guest-porthole-exec-stdin",
    &[
        Param::required("handle", Type::Int),
        Param::required("data-b64", Type::Str),
        Param::optional("eof", Type::Bool),
    ],
);
pub const GUEST_PORTHOLE_FILE_READ: CommandSpec = spec(
    "guest-porthole-file-read",
    &[
        Param::required("path", Type::Str),
        Param::optional("offset", Type::Int),
        Param::optional("length", Type::Int),
    ],
);
pub const GUEST_PORTHOLE_FILE_SHA256: CommandSpec = spec("guest-porthole-file-sha256", PATH);
pub const GUEST_PORTHOLE_FILE_WRITE: CommandSpec = spec(
    "guest-porthole-file-write",
    &[
        Param::required("path", Type::Str),
        Param::required("offset", Type::Int),
        Param::required("data-b64", Type::Str),
        Param::optional("final", Type::Object(FINAL)),
    ],
);
pub const GUEST_PORTHOLE_FILE_PARTIAL: CommandSpec = spec("guest-porthole-file-partial", PATH);
pub const GUEST_PORTHOLE_TELEMETRY: CommandSpec = spec("guest-porthole-telemetry", NONE);
pub const GUEST_PORTHOLE_PROCESSES: CommandSpec = spec(
    "guest-porthole-processes",
    &[Param::optional("max", Type::Int)],
);
pub const GUEST_PORTHOLE_SERVICES: CommandSpec = spec("guest-porthole-services", NONE);
pub const GUEST_PORTHOLE_SERVICE_STATUS: CommandSpec = spec(
    "guest-porthole-service-status",
    &[Param::required("name", Type::Str)],
);
pub const GUEST_PORTHOLE_TIME_SYNC: CommandSpec = spec(
    "guest-porthole-time-sync",
    &[Param::optional("time-ns", Type::Int)],
);

/// `guest-porthole-exec`: a program run without a shell, optionally as another user.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PxExecArgs {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg: Option<Vec<String>>,
    /// Replaces the environment (`KEY=value` entries), as guest-exec's does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// User name (or numeric uid) to run as; its primary group and groups unless overridden.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplementary_groups: Option<Vec<String>>,
    /// Standard input given at start, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<i64>,
    /// Deliver output while the child runs, and keep stdin open for guest-porthole-exec-stdin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PxExecStarted {
    pub handle: i64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PxExecOutputArgs {
    pub handle: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<i64>,
}

/// One chunk of a child's output: what arrived since the previous call. `exited` is true in
/// the last chunk only, which carries the status; the handle is gone after it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PxExecOutput {
    pub stdout_b64: String,
    pub stderr_b64: String,
    pub exited: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exitcode: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timed_out: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_truncated: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_truncated: Option<bool>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PxExecKillArgs {
    pub handle: i64,
    /// Signal number; SIGTERM when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PxExecStdinArgs {
    pub handle: i64,
    pub data_b64: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eof: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PxPathArgs {
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PxFileReadArgs {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<i64>,
}

/// `guest-porthole-file-read`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PxFileChunk {
    pub data_b64: String,
    pub offset: u64,
    pub length: u64,
    pub eof: bool,
    /// The file's size when the chunk was read.
    pub size: u64,
    pub sha256_of_chunk: String,
}

/// `guest-porthole-file-sha256`'s reply (`sha256` in lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PxFileSha256 {
    pub sha256: String,
    pub size: u64,
}

/// What `final` asks of a completed transfer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PxFinal {
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PxFileWriteArgs {
    pub path: String,
    pub offset: i64,
    pub data_b64: String,
    #[serde(default, rename = "final", skip_serializing_if = "Option::is_none")]
    pub finish: Option<PxFinal>,
}

/// `guest-porthole-file-write`'s reply: bytes of the partial file after this chunk, and
/// whether the target was replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PxFileWritten {
    pub received: u64,
    pub complete: bool,
}

/// `guest-porthole-file-partial`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PxFilePartial {
    pub received: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PxProcessesArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PxServiceArgs {
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PxTimeSyncArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ns: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::validate;
    use serde_json::{json, Value};

    /// Every example that passes a spec's validation must also deserialize into its struct:
    /// the schema table and the serde struct describe the same arguments.
    #[test]
    fn schemas_agree_with_structs() -> Result<(), serde_json::Error> {
        let cases: Vec<(CommandSpec, Value)> = vec![
            (GUEST_SYNC, json!({"id": 1})),
            (GUEST_FILE_OPEN, json!({"path": "/x", "mode": "r"})),
            (GUEST_FILE_READ, json!({"handle": 1000, "count": 3})),
            (
                GUEST_FILE_WRITE,
                json!({"handle": 1, "buf-b64": "", "count": 0}),
            ),
            (
                GUEST_FILE_SEEK,
                json!({"handle": 1, "offset": 0, "whence": "end"}),
            ),
            (
                GUEST_FILE_SEEK,
                json!({"handle": 1, "offset": 0, "whence": 2}),
            ),
            (
                GUEST_EXEC,
                json!({"path": "sh", "arg": ["-c"], "env": ["A=1"], "input-data": "",
                       "capture-output": "merged"}),
            ),
            (GUEST_EXEC_STATUS, json!({"pid": 1})),
            (GUEST_SET_TIME, json!({"time": 1})),
            (GUEST_SHUTDOWN, json!({"mode": "halt"})),
            (GUEST_FSFREEZE_FREEZE_LIST, json!({"mountpoints": ["/"]})),
            (GUEST_FSTRIM, json!({"minimum": 4096})),
            (
                GUEST_SET_USER_PASSWORD,
                json!({"username": "u", "password": "YQ==", "crypted": false}),
            ),
            (GUEST_SSH_GET_AUTHORIZED_KEYS, json!({"username": "u"})),
            (
                GUEST_SSH_ADD_AUTHORIZED_KEYS,
                json!({"username": "u", "keys": ["k"], "reset": true}),
            ),
            (
                GUEST_SSH_REMOVE_AUTHORIZED_KEYS,
                json!({"username": "u", "keys": []}),
            ),
            (
                GUEST_SET_VCPUS,
                json!({"vcpus": [{"logical-id": 1, "online": true, "can-offline": false}]}),
            ),
            (
                GUEST_SET_MEMORY_BLOCKS,
                json!({"mem-blks": [{"phys-index": -1, "online": true},
                                    {"phys-index": 18446744073709551615_u64, "online": false}]}),
            ),
        ];
        for (spec, args) in cases {
            let map = args.as_object().cloned().unwrap_or_default();
            assert!(validate(&map, spec.params).is_ok(), "{}", spec.name);
            match spec.name {
                "guest-sync" => {
                    let _: SyncArgs = serde_json::from_value(args)?;
                }
                "guest-file-open" => {
                    let _: FileOpenArgs = serde_json::from_value(args)?;
                }
                "guest-file-read" => {
                    let _: FileReadArgs = serde_json::from_value(args)?;
                }
                "guest-file-write" => {
                    let _: FileWriteArgs = serde_json::from_value(args)?;
                }
                "guest-file-seek" => {
                    let _: FileSeekArgs = serde_json::from_value(args)?;
                }
                "guest-exec" => {
                    let _: ExecArgs = serde_json::from_value(args)?;
                }
                "guest-exec-status" => {
                    let _: ExecStatusArgs = serde_json::from_value(args)?;
                }
                "guest-set-time" => {
                    let _: SetTimeArgs = serde_json::from_value(args)?;
                }
                "guest-shutdown" => {
                    let _: ShutdownArgs = serde_json::from_value(args)?;
                }
                "guest-fsfreeze-freeze-list" => {
                    let _: FreezeListArgs = serde_json::from_value(args)?;
                }
                "guest-fstrim" => {
                    let _: FstrimArgs = serde_json::from_value(args)?;
                }
                "guest-set-user-password" => {
                    let _: SetUserPasswordArgs = serde_json::from_value(args)?;
                }
                "guest-ssh-get-authorized-keys" => {
                    let _: SshUserArgs = serde_json::from_value(args)?;
                }
                "guest-ssh-add-authorized-keys" => {
                    let _: SshAddKeysArgs = serde_json::from_value(args)?;
                }
                "guest-ssh-remove-authorized-keys" => {
                    let _: SshRemoveKeysArgs = serde_json::from_value(args)?;
                }
                "guest-set-vcpus" => {
                    let _: SetVcpusArgs = serde_json::from_value(args)?;
                }
                "guest-set-memory-blocks" => {
                    let a: SetMemoryBlocksArgs = serde_json::from_value(args)?;
                    assert_eq!(a.mem_blks[0].phys_index, u64::MAX);
                    assert_eq!(a.mem_blks[1].phys_index, u64::MAX);
                }
                other => panic!("no struct check for {other}"),
            }
        }
        Ok(())
    }

    #[test]
    fn cpustats_are_tagged_linux() -> Result<(), serde_json::Error> {
        let v = serde_json::to_value(CpuStats::Linux(LinuxCpuStats {
            cpu: 3,
            iowait: Some(1),
            ..LinuxCpuStats::default()
        }))?;
        assert_eq!(v["type"], "linux");
        assert_eq!(v["cpu"], 3);
        assert!(v.get("irq").is_none());
        Ok(())
    }

    #[test]
    fn capture_modes() {
        assert_eq!(CaptureOutput::Flag(true).mode(), CaptureMode::Separated);
        assert_eq!(
            CaptureOutput::Mode("merged".into()).mode(),
            CaptureMode::Merged
        );
    }
}
