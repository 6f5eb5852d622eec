//! guest-set-user-password: set a user's password with chpasswd(8), as qemu-ga does.
//!
//! The password arrives base64-encoded; `user:password\n` goes to chpasswd's stdin (`-e` when
//! `crypted`, so the value is stored as the crypt(3) hash given). Checks and texts are
//! qemu-ga's, in its order: base64 (`Base64 data contains invalid characters`), then a newline
//! in the password (`forbidden characters in raw password`), then `:` or a newline in the user
//! name (`forbidden characters in username`). A password containing a NUL byte is refused the
//! same way (qemu-ga silently cuts it at the NUL). Unknown users are chpasswd's to report
//! (`child process has failed to set user password`).

use super::file::decode_base64;
use super::{blocking, errno_text};
use crate::agent::Agent;
use porthole_proto::commands::SetUserPasswordArgs;
use porthole_proto::CommandError;
use serde_json::{json, Value};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

pub async fn set_user_password(
    _agent: Arc<Agent>,
    args: SetUserPasswordArgs,
) -> Result<Value, CommandError> {
    // policy: a rule on which accounts the host may change would check `args.username` here.
    let line = chpasswd_line(&args.username, &args.password)?;
    blocking(move || run_chpasswd(&line, args.crypted).map(|()| json!({}))).await
}

/// Validates the arguments in qemu-ga's order and builds chpasswd's input line.
pub fn chpasswd_line(username: &str, password_b64: &str) -> Result<Vec<u8>, CommandError> {
    // qemu's decoder accepts line breaks anywhere (its alphabet includes '\n').
    let compact: String = password_b64.chars().filter(|c| *c != '\n').collect();
    let password = decode_base64(&compact)?;
    if password.iter().any(|b| matches!(b, b'\n' | b'\0')) {
        return Err(CommandError::failed("forbidden characters in raw password"));
    }
    if username.contains(['\n', ':']) {
        return Err(CommandError::failed("forbidden characters in username"));
    }
    let mut line = Vec::with_capacity(username.len() + password.len() + 2);
    line.extend_from_slice(username.as_bytes());
    line.push(b':');
    line.extend_from_slice(&password);
    line.push(b'\n');
    Ok(line)
}

fn run_chpasswd(line: &[u8], crypted: bool) -> Result<(), CommandError> {
    let program = find_in_path("chpasswd")
        .ok_or_else(|| CommandError::failed("cannot find 'passwd' program in PATH"))?;
    let mut command = Command::new(program);
    if crypted {
        command.arg("-e");
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| {
            CommandError::failed(format!(
                "failed to create child process: {}",
                errno_text(&e)
            ))
        })?;
    let written = child.stdin.take().map(|mut stdin| stdin.write_all(line));
    let status = child.wait().map_err(|e| {
        CommandError::failed(format!("failed to wait for chpasswd: {}", errno_text(&e)))
    })?;
    if let Some(Err(e)) = written {
        return Err(CommandError::failed(format!(
            "cannot write new account password: {}",
            errno_text(&e)
        )));
    }
    match status.code() {
        None => Err(CommandError::failed(
            "child process has terminated abnormally",
        )),
        Some(0) => Ok(()),
        Some(_) => Err(CommandError::failed(
            "child process has failed to set user password",
        )),
    }
}

/// The first executable `name` on the agent's PATH (glib's g_find_program_in_path).
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file() && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(user: &str, b64: &str) -> Option<String> {
        chpasswd_line(user, b64).err().map(|e| e.desc)
    }

    #[test]
    fn validation_order_and_texts() {
        assert_eq!(
            err("u", "!!!").as_deref(),
            Some("Base64 data contains invalid characters")
        );
        // "a\nb": the password check comes before the user name check.
        assert_eq!(
            err("a:b", "YQpi").as_deref(),
            Some("forbidden characters in raw password")
        );
        assert_eq!(
            err("a:b", "YWJj").as_deref(),
            Some("forbidden characters in username")
        );
        assert_eq!(
            err("a\nb", "YWJj").as_deref(),
            Some("forbidden characters in username")
        );
        assert_eq!(
            err("u", "YQBi").as_deref(),
            Some("forbidden characters in raw password")
        );
        assert_eq!(chpasswd_line("u", "YW\nJj").ok(), Some(b"u:abc\n".to_vec()));
    }
}
