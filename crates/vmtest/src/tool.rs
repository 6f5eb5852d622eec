//! Running a host tool, failing with what to install when it is missing.

use crate::error::VmError;
use std::process::Command;

/// Runs `command` to completion; returns its stdout. `install` says how to get the tool.
pub(crate) fn run(command: &mut Command, install: &str) -> Result<String, VmError> {
    let tool = command.get_program().to_string_lossy().into_owned();
    let out = command.output().map_err(|source| VmError::ToolMissing {
        tool: tool.clone(),
        install: install.to_string(),
        source,
    })?;
    if !out.status.success() {
        return Err(VmError::ToolFailed {
            tool,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
