//! The security policy: the one gate every request passes, whatever its dialect or channel.
//!
//! * Commands: qemu-ga's block (`-b`) and allow (`-a`) lists, plus the profile's disabled
//!   commands. A JSON-RPC method of the KVM Manager API is also gated as the QGA command it
//!   rides on (`exec_command` is refused whenever `guest-exec` is).
//! * Paths ([`paths`]): read and write prefixes, enforced by opening beneath the prefix.
//! * Exec ([`exec`]): allowed programs and run-as users, maximum run time and output.
//! * Sizes: bytes per file read and write, file size written, request message size.
//! * Audit ([`audit`]): one line per state-changing command.
//!
//! Every refusal names its rule (`(policy: hardened profile)`, `(policy: write-prefixes)`), is
//! counted, and is logged. The `-b`/`-a` refusals keep qemu-ga's exact text, which clients match.

pub mod audit;
pub mod exec;
pub mod paths;
pub mod profile;

use crate::config::Config;
pub use audit::{Caller, Peer};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use paths::{OpenError, Prefixes, Strategy};
use porthole_proto::{CommandError, ErrorKind};
pub use profile::Profile;
use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// qemu-ga's cap on one guest-file-read, the default of `file-max-read`.
pub const DEFAULT_FILE_MAX_READ: usize = 48 << 20;
/// The smallest request cap accepted: room for any fixed-size command.
pub const MIN_MESSAGE: usize = 4 << 10;

/// The policy settings as configured; unset members take the profile's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyConfig {
    pub profile: Profile,
    pub read_prefixes: Option<Vec<PathBuf>>,
    pub write_prefixes: Option<Vec<PathBuf>>,
    pub exec_programs: Option<Vec<PathBuf>>,
    pub exec_users: Option<Vec<String>>,
    /// Seconds.
    pub exec_max_timeout: Option<u64>,
    pub exec_max_output: Option<usize>,
    pub file_max_read: Option<usize>,
    pub file_max_write: Option<usize>,
    pub file_max_size: Option<u64>,
    pub max_message: Option<usize>,
    pub audit_log: Option<PathBuf>,
    /// Force the component walk instead of openat2 (for tests and odd kernels).
    pub path_walk_only: bool,
}

/// Why a command is disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CommandRule {
    /// `-b` / `block-rpcs` (qemu-ga's own text).
    Blocked,
    /// Not in `-a` / `allow-rpcs` (qemu-ga's own text).
    NotAllowed,
    Profile(Profile),
}

impl CommandRule {
    fn name(&self) -> String {
        match self {
            CommandRule::Blocked => "block-rpcs".into(),
            CommandRule::NotAllowed => "allow-rpcs".into(),
            CommandRule::Profile(p) => format!("{} profile", p.name()),
        }
    }
}

/// File size limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    pub max_read: usize,
    pub max_write: Option<usize>,
    pub max_size: Option<u64>,
}

#[derive(Debug)]
pub struct Policy {
    profile: Profile,
    blocked: HashSet<String>,
    /// When set, only these commands are enabled (qemu-ga 8.0's `--allow-rpcs`).
    allowed: Option<HashSet<String>>,
    pub read: Prefixes,
    pub write: Prefixes,
    strategy: Strategy,
    pub exec: exec::ExecRules,
    pub files: FileLimits,
    pub max_message: usize,
    pub audit_log: Option<PathBuf>,
    refusals: AtomicU64,
}

impl Default for Policy {
    fn default() -> Self {
        Self::new(&[], None)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("policy {key}: {why}")]
pub struct PolicyError {
    pub key: &'static str,
    pub why: String,
}

impl Policy {
    /// The default profile with qemu-ga's command lists.
    pub fn new(blocked: &[String], allowed: Option<&[String]>) -> Self {
        Self::build(blocked, allowed, &PolicyConfig::default()).unwrap_or_else(|_| Self {
            profile: Profile::Default,
            blocked: blocked.iter().cloned().collect(),
            allowed: allowed.map(|list| list.iter().cloned().collect()),
            read: Prefixes::everything(),
            write: Prefixes::everything(),
            strategy: Strategy::Auto,
            exec: exec::ExecRules::default(),
            files: FileLimits {
                max_read: DEFAULT_FILE_MAX_READ,
                max_write: None,
                max_size: None,
            },
            max_message: porthole_proto::framer::MAX_MESSAGE_BYTES,
            audit_log: None,
            refusals: AtomicU64::new(0),
        })
    }

    pub fn from_config(config: &Config) -> Result<Self, PolicyError> {
        Self::build(
            &config.block_rpcs,
            config.allow_rpcs.as_deref(),
            &config.policy,
        )
    }

    fn build(
        blocked: &[String],
        allowed: Option<&[String]>,
        c: &PolicyConfig,
    ) -> Result<Self, PolicyError> {
        let p = c.profile;
        let max_message = c.max_message.unwrap_or_else(|| p.max_message());
        let max_frame = porthole_proto::framer::MAX_MESSAGE_BYTES;
        if !(MIN_MESSAGE..=max_frame).contains(&max_message) {
            return Err(PolicyError {
                key: "max-message",
                why: format!("{max_message} is outside {MIN_MESSAGE}..={max_frame} bytes"),
            });
        }
        let absolute =
            |key: &'static str, list: &[PathBuf]| match list.iter().find(|p| !p.is_absolute()) {
                Some(bad) => Err(PolicyError {
                    key,
                    why: format!("'{}' is not an absolute path", bad.display()),
                }),
                None => Ok(Prefixes::new(list)),
            };
        let read = absolute(
            "read-prefixes",
            &c.read_prefixes.clone().unwrap_or_else(|| p.read_prefixes()),
        )?;
        let write = absolute(
            "write-prefixes",
            &c.write_prefixes
                .clone()
                .unwrap_or_else(|| p.write_prefixes()),
        )?;
        let programs = c.exec_programs.clone().or_else(|| p.exec_programs());
        Ok(Self {
            profile: p,
            blocked: blocked.iter().cloned().collect(),
            allowed: allowed.map(|list| list.iter().cloned().collect()),
            read,
            write,
            strategy: if c.path_walk_only {
                Strategy::Walk
            } else {
                Strategy::Auto
            },
            exec: exec::ExecRules {
                programs: programs.map(|list| exec::canonical_programs(&list)),
                users: c.exec_users.clone().or_else(|| p.exec_users()),
                max_timeout: c.exec_max_timeout.map(Duration::from_secs),
                max_output: c.exec_max_output.unwrap_or(exec::DEFAULT_MAX_OUTPUT),
            },
            files: FileLimits {
                max_read: c.file_max_read.unwrap_or(DEFAULT_FILE_MAX_READ),
                max_write: c.file_max_write,
                max_size: c.file_max_size,
            },
            max_message,
            audit_log: c.audit_log.clone(),
            refusals: AtomicU64::new(0),
        })
    }

    /// Creates the spool directory (mode 0700) when it is a write prefix, so the hardened
    /// profile works on a fresh guest. Failure is logged: writes there then fail with ENOENT.
    pub fn prepare_spool(&self) {
        use std::os::unix::fs::DirBuilderExt;
        let spool = Path::new(profile::SPOOL_DIR);
        if self.write.list().iter().any(|p| p == spool) && !spool.exists() {
            let made = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(spool);
            if let Err(e) = made {
                tracing::warn!("cannot create spool {}: {e}", spool.display());
            }
        }
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Refusals so far (every rule).
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    /// Counts and logs a refusal; returns the error to send.
    pub fn refuse(&self, rule: &str, error: CommandError) -> CommandError {
        self.refusals.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("policy refusal ({rule}): {}", error.desc);
        error
    }

    fn command_rule(&self, command: &str) -> Option<CommandRule> {
        if self.profile.disabled_commands().contains(&command) {
            return Some(CommandRule::Profile(self.profile));
        }
        if self.blocked.contains(command) {
            return Some(CommandRule::Blocked);
        }
        if self
            .allowed
            .as_ref()
            .is_some_and(|set| !set.contains(command))
        {
            return Some(CommandRule::NotAllowed);
        }
        None
    }

    /// Whether `command` may run at all; `guest-info` reports this as `enabled`.
    pub fn command_enabled(&self, command: &str) -> bool {
        self.command_rule(command).is_none()
    }

    /// Whether a command gated as `command` and also as the QGA commands in `also` may run.
    pub fn command_enabled_as(&self, command: &str, also: &[&str]) -> bool {
        self.command_enabled(command) && also.iter().all(|c| self.command_enabled(c))
    }

    /// Refuses a disabled command. `-b`/`-a` refusals use qemu-ga's text (class
    /// CommandNotFound); others name the rule: `Command guest-exec has been disabled (policy:
    /// hardened profile)`.
    pub fn check_command(&self, command: &str) -> Result<(), CommandError> {
        self.check_command_as(command, &[])
    }

    /// [`Self::check_command`] for a command that also rides on the QGA commands `also`.
    pub fn check_command_as(&self, command: &str, also: &[&str]) -> Result<(), CommandError> {
        if let Some(rule) = self.command_rule(command) {
            let error = match rule {
                CommandRule::Blocked | CommandRule::NotAllowed => {
                    CommandError::command_disabled(command, None)
                }
                CommandRule::Profile(_) => CommandError::command_refused(command, &rule.name()),
            };
            return Err(self.refuse(&rule.name(), error));
        }
        for underlying in also {
            if let Some(rule) = self.command_rule(underlying) {
                let name = format!("{} {underlying}", rule.name());
                let error = CommandError::command_refused(command, &name);
                return Err(self.refuse(&name, error));
            }
        }
        Ok(())
    }

    fn path_error(&self, path: &str, mode: &str, error: OpenError, rule: &str) -> CommandError {
        let text = |why: String| format!("failed to open file '{path}' (mode: '{mode}'): {why}");
        match error {
            OpenError::Outside(why) => self.refuse(
                rule,
                CommandError::new(ErrorKind::PermissionDenied, text(why)),
            ),
            OpenError::Relative(_) => self.refuse(
                rule,
                CommandError::new(
                    ErrorKind::PermissionDenied,
                    text(format!("{error} (policy: {rule})")),
                ),
            ),
            OpenError::Loop => CommandError::failed(text(error.to_string())),
            OpenError::Io(e) => {
                let kind = match e.raw_os_error() {
                    Some(libc::ENOENT) => ErrorKind::NotFound,
                    _ => ErrorKind::Failed,
                };
                CommandError::new(kind, text(crate::commands::errno_text(&e)))
            }
        }
    }

    /// Opens a regular file for reading under the read prefixes (blocking). FIFOs, devices and
    /// directories are refused without blocking on them.
    pub fn open_for_read(&self, path: &str) -> Result<File, CommandError> {
        let file = self.open(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK, "r")?;
        regular_blocking(file, path, "r")
    }

    /// Opens (creating, mode 0666 less umask) a regular file for writing under the write
    /// prefixes, truncating it unless `append` (blocking). Non-regular files are refused.
    pub fn open_for_write(&self, path: &str, append: bool) -> Result<File, CommandError> {
        let (flags, mode) = if append {
            (OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_APPEND, "a")
        } else {
            (OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC, "w")
        };
        let file = self.open(path, flags | OFlag::O_NONBLOCK, mode)?;
        regular_blocking(file, path, mode)
    }

    /// Opens `path` with open(2) `flags`; `mode` is the fopen mode named in errors. Flags that
    /// write need a write prefix; read-write also needs the opened file under a read prefix.
    pub fn open(&self, path: &str, flags: OFlag, mode: &str) -> Result<File, CommandError> {
        let access = flags & OFlag::O_ACCMODE;
        let writes = access != OFlag::O_RDONLY
            || flags.intersects(OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_APPEND);
        let (prefixes, rule) = if writes {
            (&self.write, "write-prefixes")
        } else {
            (&self.read, "read-prefixes")
        };
        let file = prefixes
            .open(
                path,
                flags,
                Mode::from_bits_truncate(0o666),
                self.strategy,
                rule,
            )
            .map_err(|e| self.path_error(path, mode, e, rule))?;
        if access == OFlag::O_RDWR && !self.read.is_unrestricted() {
            let resolved = paths::fd_path(&file).map_err(|e| {
                CommandError::failed(format!("cannot check '{path}' against read-prefixes: {e}"))
            })?;
            if !self.read.contains(&resolved) {
                let why = format!(
                    "'{}' is outside the allowed prefixes (policy: read-prefixes)",
                    resolved.display()
                );
                return Err(self.path_error(path, mode, OpenError::Outside(why), "read-prefixes"));
            }
        }
        Ok(file)
    }

    /// Creates the missing directories of `dir` beneath its write prefix (mode 0755), each
    /// step resolved beneath the prefix like an open.
    pub fn create_dirs_for_write(&self, dir: &Path) -> Result<(), CommandError> {
        let text = dir.to_string_lossy().into_owned();
        let fail = |e: OpenError| self.path_error(&text, "mkdir", e, "write-prefixes");
        if self.write.is_unrestricted() {
            return std::fs::create_dir_all(dir).map_err(|e| fail(OpenError::Io(e)));
        }
        if !dir.is_absolute() {
            return Err(fail(OpenError::Relative(text.clone())));
        }
        let Some((prefix, rest)) = self.write.matching(dir) else {
            let why = format!("'{text}' is outside the allowed prefixes (policy: write-prefixes)");
            return Err(fail(OpenError::Outside(why)));
        };
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        let mut sub = PathBuf::new();
        for component in rest.components() {
            let parent = sub.clone();
            sub.push(component);
            match paths::open_beneath(prefix, &sub, flags, Mode::empty(), self.strategy) {
                Ok(_) => continue,
                Err(OpenError::Io(e)) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(fail(e)),
            }
            let name = component.as_os_str();
            if !paths::is_plain_name(name) {
                return Err(fail(OpenError::Io(std::io::Error::from_raw_os_error(
                    libc::ENOENT,
                ))));
            }
            let parent_fd =
                paths::open_beneath(prefix, &parent, flags, Mode::empty(), self.strategy)
                    .map_err(fail)?;
            match nix::sys::stat::mkdirat(&parent_fd, name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(fail(OpenError::Io(std::io::Error::from(e)))),
            }
        }
        Ok(())
    }

    /// Opens the directory `dir` (`O_PATH`) beneath the write prefixes, for operations on its
    /// entries by name (a rename into place): the check and the open are one, as for files.
    pub fn open_dir_for_write(&self, dir: &str) -> Result<File, CommandError> {
        let rule = "write-prefixes";
        self.write
            .open(
                dir,
                OFlag::O_PATH | OFlag::O_DIRECTORY,
                Mode::empty(),
                self.strategy,
                rule,
            )
            .map_err(|e| self.path_error(dir, "w", e, rule))
    }

    /// Refuses a read of `count` bytes over `file-max-read`.
    pub fn check_read_size(&self, count: u64) -> Result<(), CommandError> {
        let max = self.files.max_read as u64;
        if count > max {
            return Err(self.refuse(
                "file-max-read",
                CommandError::new(
                    ErrorKind::PermissionDenied,
                    format!("read of {count} bytes exceeds {max} (policy: file-max-read)"),
                ),
            ));
        }
        Ok(())
    }

    /// Refuses a write of `count` bytes over `file-max-write`, or one that would make the file
    /// (at `end`, the offset after the write) larger than `file-max-size`.
    pub fn check_write_size(&self, count: u64, end: u64) -> Result<(), CommandError> {
        if let Some(max) = self.files.max_write {
            if count > max as u64 {
                return Err(self.refuse(
                    "file-max-write",
                    CommandError::new(
                        ErrorKind::PermissionDenied,
                        format!("write of {count} bytes exceeds {max} (policy: file-max-write)"),
                    ),
                ));
            }
        }
        if let Some(max) = self.files.max_size {
            if end > max {
                return Err(self.refuse(
                    "file-max-size",
                    CommandError::new(
                        ErrorKind::PermissionDenied,
                        format!(
                            "file would grow to {end} bytes, over {max} (policy: file-max-size)"
                        ),
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks a program against `exec-programs`. Returns the resolved path to run instead of
    /// `program` when a program list is set (so the request's PATH cannot redirect the check).
    pub fn check_program(
        &self,
        program: &str,
        env: Option<&[String]>,
    ) -> Result<Option<PathBuf>, CommandError> {
        let Some(allowed) = &self.exec.programs else {
            return Ok(None);
        };
        let refused = |why: String| {
            self.refuse(
                "exec-programs",
                CommandError::new(
                    ErrorKind::PermissionDenied,
                    format!("program '{program}' {why} (policy: exec-programs)"),
                ),
            )
        };
        let Some(resolved) = exec::resolve_program(program, env) else {
            return Err(refused("was not found".into()));
        };
        if allowed.contains(&resolved) {
            Ok(Some(resolved))
        } else {
            Err(refused(format!(
                "resolves to '{}', which is not allowed",
                resolved.display()
            )))
        }
    }

    /// Checks a run-as user against `exec-users` (for exec-as-user).
    pub fn check_user(&self, user: &str) -> Result<(), CommandError> {
        match &self.exec.users {
            Some(users) if !users.iter().any(|u| u == user) => Err(self.refuse(
                "exec-users",
                CommandError::new(
                    ErrorKind::PermissionDenied,
                    format!("running as user '{user}' is not allowed (policy: exec-users)"),
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Checks a requested timeout against `exec-max-timeout`.
    pub fn check_timeout(&self, requested: Duration) -> Result<(), CommandError> {
        match self.exec.max_timeout {
            Some(max) if requested > max => Err(self.refuse(
                "exec-max-timeout",
                CommandError::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "timeout of {} s exceeds the maximum {} s (policy: exec-max-timeout)",
                        requested.as_secs(),
                        max.as_secs()
                    ),
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// Refuses anything but a regular file, then clears O_NONBLOCK (opened non-blocking so a FIFO
/// without a peer cannot hang the open).
fn regular_blocking(file: File, path: &str, mode: &str) -> Result<File, CommandError> {
    use nix::fcntl::{fcntl, FcntlArg};
    let failed = |why: String| {
        CommandError::failed(format!(
            "failed to open file '{path}' (mode: '{mode}'): {why}"
        ))
    };
    let meta = file
        .metadata()
        .map_err(|e| failed(crate::commands::errno_text(&e)))?;
    if !meta.is_file() {
        return Err(failed("not a regular file".into()));
    }
    let flags = fcntl(&file, FcntlArg::F_GETFL).map_err(|e| failed(e.desc().into()))?;
    let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(&file, FcntlArg::F_SETFL(flags)).map_err(|e| failed(e.desc().into()))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_are_refused_without_blocking() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600))?;
        let policy = Policy::default();
        let text = fifo.to_string_lossy();
        for result in [
            policy.open_for_read(&text),
            policy.open_for_write(&text, false),
        ] {
            let desc = result.err().map(|e| e.desc).unwrap_or_default();
            assert!(
                desc.contains("not a regular file") || desc.contains("No such device"),
                "{desc}"
            );
        }
        let file = dir.path().join("plain");
        std::fs::write(&file, "x")?;
        assert!(policy.open_for_read(&file.to_string_lossy()).is_ok());
        Ok(())
    }

    #[test]
    fn block_and_allow_lists() {
        let policy = Policy::new(&["guest-exec".into()], None);
        assert!(!policy.command_enabled("guest-exec"));
        assert!(policy.command_enabled("guest-ping"));
        let err = policy.check_command("guest-exec").err();
        assert_eq!(
            err.map(|e| e.desc),
            Some("Command guest-exec has been disabled".to_string())
        );
        let allow = ["guest-ping".to_string(), "guest-exec".to_string()];
        let policy = Policy::new(&["guest-exec".into()], Some(&allow));
        assert!(policy.command_enabled("guest-ping"));
        assert!(
            !policy.command_enabled("guest-exec"),
            "block wins over allow"
        );
        assert!(!policy.command_enabled("guest-info"));
        assert_eq!(policy.refusals(), 0);
    }

    #[test]
    fn profile_and_alias_refusals_name_the_rule() -> Result<(), PolicyError> {
        let hardened = PolicyConfig {
            profile: Profile::Hardened,
            ..PolicyConfig::default()
        };
        let policy = Policy::build(&[], None, &hardened)?;
        let desc = |r: Result<(), CommandError>| r.err().map(|e| (e.kind, e.desc));
        assert_eq!(
            desc(policy.check_command("guest-exec")),
            Some((
                ErrorKind::CommandDisabled,
                "Command guest-exec has been disabled (policy: hardened profile)".into()
            ))
        );
        let policy = Policy::build(&["guest-exec".into()], None, &PolicyConfig::default())?;
        assert_eq!(
            desc(policy.check_command_as("exec_command", &["guest-exec"])),
            Some((
                ErrorKind::CommandDisabled,
                "Command exec_command has been disabled (policy: block-rpcs guest-exec)".into()
            ))
        );
        assert_eq!(policy.refusals(), 1);
        Ok(())
    }

    #[test]
    fn run_as_users_and_timeouts() -> Result<(), PolicyError> {
        let config = PolicyConfig {
            exec_users: Some(vec!["backup".into()]),
            exec_max_timeout: Some(10),
            ..PolicyConfig::default()
        };
        let policy = Policy::build(&[], None, &config)?;
        assert!(policy.check_user("backup").is_ok());
        let err = policy.check_user("root").err().map(|e| e.desc);
        assert_eq!(
            err.as_deref(),
            Some("running as user 'root' is not allowed (policy: exec-users)")
        );
        assert!(policy.check_timeout(Duration::from_secs(10)).is_ok());
        assert!(policy.check_timeout(Duration::from_secs(11)).is_err());
        assert!(Policy::default().check_user("anyone").is_ok());
        Ok(())
    }

    #[test]
    fn message_cap_range() {
        let too_small = PolicyConfig {
            max_message: Some(100),
            ..PolicyConfig::default()
        };
        assert!(Policy::build(&[], None, &too_small).is_err());
        let relative = PolicyConfig {
            read_prefixes: Some(vec![PathBuf::from("var/log")]),
            ..PolicyConfig::default()
        };
        assert!(Policy::build(&[], None, &relative).is_err());
    }
}
