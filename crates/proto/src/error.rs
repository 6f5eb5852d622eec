//! The one error type every command and every envelope check produces.
//!
//! A [`CommandError`] carries a dialect-neutral [`ErrorKind`]; the reply encoder maps it to a QGA
//! error class or a JSON-RPC error code, so handlers never need to know which dialect asked.

use std::fmt;

/// What went wrong, independent of the dialect that reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The message is not valid JSON.
    Parse,
    /// Valid JSON, but not a request envelope.
    InvalidRequest,
    /// No such command.
    CommandNotFound,
    /// The command exists but policy disabled it.
    CommandDisabled,
    /// Arguments missing, unexpected or of the wrong type.
    InvalidParams,
    /// The command ran and failed.
    Failed,
    /// Policy refused the arguments (a path, a user, a size).
    PermissionDenied,
    /// The object named by the arguments does not exist (file, handle, process).
    NotFound,
    /// The command ran out of time.
    Timeout,
    /// A bug or resource failure inside the agent.
    Internal,
}

impl ErrorKind {
    /// The QGA `class`: qemu-ga uses only these two for the commands it serves.
    pub fn qga_class(self) -> &'static str {
        match self {
            ErrorKind::CommandNotFound | ErrorKind::CommandDisabled => "CommandNotFound",
            _ => "GenericError",
        }
    }

    /// The JSON-RPC 2.0 `code`: the standard ones, plus the -32000 range of the KVM Manager agent
    /// API (-32000 command failed, -32001 permission denied, -32002 not found, -32003 timeout).
    pub fn jsonrpc_code(self) -> i64 {
        match self {
            ErrorKind::Parse => -32700,
            ErrorKind::InvalidRequest => -32600,
            ErrorKind::CommandNotFound => -32601,
            // A policy refusal, like a refused path: the method exists.
            ErrorKind::CommandDisabled => -32001,
            ErrorKind::InvalidParams => -32602,
            ErrorKind::Internal => -32603,
            ErrorKind::Failed => -32000,
            ErrorKind::PermissionDenied => -32001,
            ErrorKind::NotFound => -32002,
            ErrorKind::Timeout => -32003,
        }
    }
}

/// An error reply: a kind and the human-readable text (qemu-ga's `desc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    pub kind: ErrorKind,
    pub desc: String,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.desc)
    }
}

impl std::error::Error for CommandError {}

impl CommandError {
    pub fn new(kind: ErrorKind, desc: impl Into<String>) -> Self {
        Self {
            kind,
            desc: desc.into(),
        }
    }

    /// A command failure (qemu-ga's GenericError).
    pub fn failed(desc: impl Into<String>) -> Self {
        Self::new(ErrorKind::Failed, desc)
    }

    pub fn invalid_params(desc: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParams, desc)
    }

    pub fn not_found(desc: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, desc)
    }

    pub fn internal(desc: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, desc)
    }

    /// qemu-ga's text for an unknown command.
    pub fn command_not_found(command: &str) -> Self {
        Self::new(
            ErrorKind::CommandNotFound,
            format!("The command {command} has not been found"),
        )
    }

    /// qemu-ga's text for a command disabled by `-b`/`-a`, optionally with a reason.
    pub fn command_disabled(command: &str, reason: Option<&str>) -> Self {
        let desc = match reason {
            Some(reason) => format!("Command {command} has been disabled: {reason}"),
            None => format!("Command {command} has been disabled"),
        };
        Self::new(ErrorKind::CommandDisabled, desc)
    }

    /// A command disabled by a policy rule other than `-b`/`-a`, naming the rule:
    /// `Command guest-exec has been disabled (policy: hardened profile)`.
    pub fn command_refused(command: &str, rule: &str) -> Self {
        Self::new(
            ErrorKind::CommandDisabled,
            format!("Command {command} has been disabled (policy: {rule})"),
        )
    }

    /// A policy refusal of the arguments (a path, a program, a size).
    pub fn permission_denied(desc: impl Into<String>) -> Self {
        Self::new(ErrorKind::PermissionDenied, desc)
    }

    pub fn timeout(desc: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, desc)
    }

    /// qemu's text for an argument value out of range (`value '-1' is invalid for argument count`).
    pub fn invalid_value(value: impl fmt::Display, argument: &str) -> Self {
        Self::failed(format!(
            "value '{value}' is invalid for argument {argument}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refusals_are_permission_denied_in_jsonrpc() {
        let refused = CommandError::command_refused("guest-exec", "hardened profile");
        assert_eq!(
            refused.desc,
            "Command guest-exec has been disabled (policy: hardened profile)"
        );
        assert_eq!(refused.kind.qga_class(), "CommandNotFound");
        assert_eq!(refused.kind.jsonrpc_code(), -32001);
        assert_eq!(ErrorKind::CommandNotFound.jsonrpc_code(), -32601);
        assert_eq!(CommandError::timeout("t").kind.jsonrpc_code(), -32003);
        assert_eq!(CommandError::not_found("n").kind.jsonrpc_code(), -32002);
        assert_eq!(CommandError::failed("f").kind.jsonrpc_code(), -32000);
        assert_eq!(
            CommandError::permission_denied("p").kind.qga_class(),
            "GenericError"
        );
    }
}
