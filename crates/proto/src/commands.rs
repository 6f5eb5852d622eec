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
                other => panic!("no struct check for {other}"),
            }
        }
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
