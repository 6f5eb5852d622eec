//! The fsfreeze hook (qemu-ga's `-F`) and porthole's script directories beside it.
//!
//! With a hook configured at `DIR/fsfreeze-hook`:
//! - freeze runs `fsfreeze-hook freeze`, then every executable in `DIR/pre-freeze.d/` in name
//!   order with the argument `freeze`. Any non-zero exit aborts the freeze (after a failing
//!   pre-freeze script, `fsfreeze-hook thaw` runs so the hook can undo its work).
//! - thaw runs every executable in `DIR/post-thaw.d/` in name order with `thaw`, then
//!   `fsfreeze-hook thaw`. All of them run even if one fails; the first failure is reported.
//!
//! The directories nest inside the hook, like brackets: the hook is the outermost step. Scripts
//! run with stdin, stdout and stderr on /dev/null in their own process group, as qemu-ga runs
//! its hook. Names starting with `.` or ending in `~` are skipped (editor leftovers), as are
//! non-executable and non-regular files. Without a hook, no script runs (qemu-ga's rule: `-F`
//! turns the machinery on).

use super::super::errno_text;
use porthole_proto::CommandError;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const PRE_FREEZE_DIR: &str = "pre-freeze.d";
pub const POST_THAW_DIR: &str = "post-thaw.d";
/// More scripts than anyone installs; a directory holding more is refused, not walked forever.
const MAX_SCRIPTS: usize = 1024;

/// Runs the freeze side: the hook, then pre-freeze.d.
pub fn freeze(hook: Option<&Path>) -> Result<(), CommandError> {
    let Some(hook) = hook else { return Ok(()) };
    run_hook(hook, "freeze")?;
    let result = scripts(hook, PRE_FREEZE_DIR)
        .and_then(|list| list.iter().try_for_each(|s| run_script(s, "freeze")));
    if result.is_err() {
        if let Err(e) = run_hook(hook, "thaw") {
            tracing::warn!("undoing the freeze hook after a failed pre-freeze script: {e}");
        }
    }
    result
}

/// Runs the thaw side: post-thaw.d, then the hook; everything runs, the first error is returned.
pub fn thaw(hook: Option<&Path>) -> Result<(), CommandError> {
    let Some(hook) = hook else { return Ok(()) };
    let mut first = None;
    match scripts(hook, POST_THAW_DIR) {
        Ok(list) => {
            for script in list {
                if let Err(e) = run_script(&script, "thaw") {
                    tracing::warn!("{e}");
                    first.get_or_insert(e);
                }
            }
        }
        Err(e) => {
            first.get_or_insert(e);
        }
    }
    if let Err(e) = run_hook(hook, "thaw") {
        first.get_or_insert(e);
    }
    first.map_or(Ok(()), Err)
}

/// The hook, with qemu-ga's texts.
fn run_hook(hook: &Path, arg: &str) -> Result<(), CommandError> {
    if let Err(e) = nix::unistd::access(hook, nix::unistd::AccessFlags::X_OK) {
        let error = std::io::Error::from_raw_os_error(e as i32);
        return Err(CommandError::failed(format!(
            "can't access fsfreeze hook '{}': {}",
            hook.display(),
            errno_text(&error)
        )));
    }
    tracing::info!("executing fsfreeze hook with arg '{arg}'");
    match execute(hook, arg)? {
        None => Err(CommandError::failed(
            "fsfreeze hook has terminated abnormally",
        )),
        Some(0) => Ok(()),
        Some(code) => Err(CommandError::failed(format!(
            "fsfreeze hook has failed with status {code}"
        ))),
    }
}

fn run_script(script: &Path, arg: &str) -> Result<(), CommandError> {
    tracing::info!("executing fsfreeze script {} {arg}", script.display());
    match execute(script, arg)? {
        Some(0) => Ok(()),
        Some(code) => Err(CommandError::failed(format!(
            "fsfreeze script '{}' has failed with status {code}",
            script.display()
        ))),
        None => Err(CommandError::failed(format!(
            "fsfreeze script '{}' has terminated abnormally",
            script.display()
        ))),
    }
}

/// Runs `program arg`; `Some(exit code)`, or `None` when a signal ended it.
fn execute(program: &Path, arg: &str) -> Result<Option<i32>, CommandError> {
    let status = Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .status()
        .map_err(|e| {
            CommandError::failed(format!(
                "cannot execute '{}': {}",
                program.display(),
                errno_text(&e)
            ))
        })?;
    Ok(status.code().filter(|_| status.signal().is_none()))
}

/// The executables of the directory `name` beside the hook, in byte order of their names.
fn scripts(hook: &Path, name: &str) -> Result<Vec<PathBuf>, CommandError> {
    let dir = hook.parent().unwrap_or(Path::new("/")).join(name);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(dir_error(&dir, &e)),
    };
    let mut list = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| dir_error(&dir, &e))?;
        if list.len() == MAX_SCRIPTS {
            return Err(CommandError::failed(format!(
                "{}: more than {MAX_SCRIPTS} scripts",
                dir.display()
            )));
        }
        let name = entry.file_name();
        let bytes = name.as_bytes();
        if bytes.starts_with(b".") || bytes.ends_with(b"~") {
            continue;
        }
        let path = entry.path();
        let runnable = std::fs::metadata(&path).is_ok_and(|m| m.is_file())
            && nix::unistd::access(&path, nix::unistd::AccessFlags::X_OK).is_ok();
        if runnable {
            list.push(path);
        }
    }
    list.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    Ok(list)
}

fn dir_error(dir: &Path, e: &std::io::Error) -> CommandError {
    CommandError::failed(format!("cannot read {}: {}", dir.display(), errno_text(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(path: &Path, body: &str) -> std::io::Result<()> {
        std::fs::write(path, format!("#!/bin/sh\n{body}\n"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
    }

    #[test]
    fn order_and_failures() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("log");
        let hook = dir.path().join("fsfreeze-hook");
        let line = |who: &str| format!("echo \"{who} $1\" >> {}", log.display());
        script(&hook, &line("hook"))?;
        for d in [PRE_FREEZE_DIR, POST_THAW_DIR] {
            std::fs::create_dir(dir.path().join(d))?;
            script(&dir.path().join(d).join("20-b"), &line(&format!("{d}/b")))?;
            script(&dir.path().join(d).join("10-a"), &line(&format!("{d}/a")))?;
            std::fs::write(dir.path().join(d).join("15-not-executable"), "exit 1")?;
            script(&dir.path().join(d).join(".hidden"), "exit 1")?;
        }
        freeze(Some(&hook))?;
        thaw(Some(&hook))?;
        let text = std::fs::read_to_string(&log)?;
        assert_eq!(
            text,
            "hook freeze\npre-freeze.d/a freeze\npre-freeze.d/b freeze\n\
             post-thaw.d/a thaw\npost-thaw.d/b thaw\nhook thaw\n"
        );
        // A failing pre-freeze script aborts and the hook is told to thaw.
        std::fs::remove_file(&log)?;
        script(&dir.path().join(PRE_FREEZE_DIR).join("15-fail"), "exit 7")?;
        let err = freeze(Some(&hook)).err().map(|e| e.desc);
        assert!(
            err.as_deref()
                .is_some_and(|e| e.ends_with("15-fail' has failed with status 7")),
            "{err:?}"
        );
        assert_eq!(
            std::fs::read_to_string(&log)?,
            "hook freeze\npre-freeze.d/a freeze\nhook thaw\n"
        );
        Ok(())
    }

    #[test]
    fn hook_texts_are_qemu_gas() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let missing = dir.path().join("nope");
        let err = freeze(Some(&missing)).err().map(|e| e.desc);
        assert_eq!(
            err,
            Some(format!(
                "can't access fsfreeze hook '{}': No such file or directory",
                missing.display()
            ))
        );
        let hook = dir.path().join("hook");
        script(&hook, "exit 3")?;
        let err = freeze(Some(&hook)).err().map(|e| e.desc);
        assert_eq!(
            err.as_deref(),
            Some("fsfreeze hook has failed with status 3")
        );
        script(&hook, "kill -9 $$")?;
        let err = freeze(Some(&hook)).err().map(|e| e.desc);
        assert_eq!(
            err.as_deref(),
            Some("fsfreeze hook has terminated abnormally")
        );
        assert!(freeze(None).is_ok() && thaw(None).is_ok());
        Ok(())
    }
}
