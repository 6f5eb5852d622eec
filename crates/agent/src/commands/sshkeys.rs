//! guest-ssh-get-authorized-keys, guest-ssh-add-authorized-keys and
//! guest-ssh-remove-authorized-keys, with qemu-ga ≥ 5.2's semantics and texts.
//!
//! `~/.ssh` (0700) and `~/.ssh/authorized_keys` (0600) belong to the user and are created when
//! missing; keys starting with `#` or containing a newline are refused before anything is read
//! (`invalid OpenSSH public key: '<key>'`), and so are empty keys (qemu-ga writes a blank line);
//! keys already present are not added twice; other lines (comments, options) are kept as they
//! are. guest-ssh-get lists the non-blank, non-comment lines, whitespace-trimmed, last line
//! first (qemu-ga 7.2's order).
//!
//! The agent runs as root inside a directory the user owns, so nothing below the home directory
//! is reached by path. The rule: the home directory is taken as /etc/passwd names it; `.ssh`
//! and `authorized_keys` are opened relative to it with `O_NOFOLLOW`, so a symlink planted by
//! the user (`~/.ssh -> /root/.ssh`, `authorized_keys -> /etc/shadow`) is refused, never
//! followed; `.ssh` must belong to the user (or root) and `authorized_keys` must be a regular
//! file with a single link (no hard link to another file). The new contents go to a fresh
//! `O_EXCL` temporary file in `.ssh`, are chowned and chmodded through its descriptor, synced,
//! and renamed over `authorized_keys`, so a reader never sees half a file.

use super::{blocking, errno_text};
use crate::agent::Agent;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fchmod, fstat, mkdirat, Mode, SFlag};
use nix::unistd::{fchown, fsync, unlinkat, Gid, Uid, UnlinkatFlags, User};
use porthole_proto::commands::{AuthorizedKeys, SshAddKeysArgs, SshRemoveKeysArgs, SshUserArgs};
use porthole_proto::CommandError;
use serde_json::{json, Value};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const SSH_DIR: &str = ".ssh";
const AUTHORIZED_KEYS: &str = "authorized_keys";
/// The largest authorized_keys file read (thousands of keys); a bigger one is refused.
const MAX_FILE: u64 = 4 << 20;

pub async fn get(_agent: Arc<Agent>, args: SshUserArgs) -> Result<Value, CommandError> {
    // policy: a rule on which accounts the host may read keys of would check `args.username`.
    blocking(move || {
        let account = Account::lookup(&args.username)?;
        let keys = account.read_keys()?;
        super::to_value(AuthorizedKeys {
            keys: listed_keys(&keys),
        })
    })
    .await
}

pub async fn add(_agent: Arc<Agent>, args: SshAddKeysArgs) -> Result<Value, CommandError> {
    // policy: a rule on which accounts the host may give keys to would check `args.username`.
    check_keys(&args.keys)?;
    blocking(move || {
        let account = Account::lookup(&args.username)?;
        let ssh = account
            .ssh_dir(true)?
            .ok_or_else(|| account.mkdir_error(libc::ENOENT))?;
        let mut lines = if args.reset.unwrap_or(false) {
            Vec::new()
        } else {
            account.read_lines(&ssh)?.unwrap_or_default()
        };
        for key in &args.keys {
            if !lines.iter().any(|l| l == key.as_bytes()) {
                lines.push(key.as_bytes().to_vec());
            }
        }
        account.write_lines(&ssh, &lines).map(|()| json!({}))
    })
    .await
}

pub async fn remove(_agent: Arc<Agent>, args: SshRemoveKeysArgs) -> Result<Value, CommandError> {
    // policy: as for add.
    check_keys(&args.keys)?;
    blocking(move || {
        let account = Account::lookup(&args.username)?;
        let Some(ssh) = account.ssh_dir(false)? else {
            return Ok(json!({}));
        };
        let Some(lines) = account.read_lines(&ssh)? else {
            return Ok(json!({}));
        };
        let kept: Vec<Vec<u8>> = lines
            .into_iter()
            .filter(|l| !args.keys.iter().any(|k| k.as_bytes() == l.as_slice()))
            .collect();
        account.write_lines(&ssh, &kept).map(|()| json!({}))
    })
    .await
}

/// qemu-ga's key check (a comment or a newline), plus: not empty.
fn check_keys(keys: &[String]) -> Result<(), CommandError> {
    match keys
        .iter()
        .find(|k| k.trim().is_empty() || k.starts_with('#') || k.contains('\n'))
    {
        Some(bad) => Err(CommandError::failed(format!(
            "invalid OpenSSH public key: '{bad}'"
        ))),
        None => Ok(()),
    }
}

/// guest-ssh-get's list: trimmed lines that are neither blank nor comments, last first.
fn listed_keys(lines: &[Vec<u8>]) -> Vec<String> {
    lines
        .iter()
        .map(|l| String::from_utf8_lossy(l.trim_ascii()).into_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .rev()
        .collect()
}

/// The lines of a file: split at `\n`, without the empty piece after a final newline.
fn split_lines(data: &[u8]) -> Vec<Vec<u8>> {
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    if data.is_empty() {
        return Vec::new();
    }
    body.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
}

struct Account {
    uid: Uid,
    gid: Gid,
    home: PathBuf,
}

impl Account {
    fn lookup(name: &str) -> Result<Self, CommandError> {
        // qemu-ga's text; its errno is 0 when the user simply does not exist.
        let missing = || CommandError::failed(format!("failed to lookup user '{name}': Success"));
        let user = User::from_name(name).ok().flatten().ok_or_else(missing)?;
        Ok(Self {
            uid: user.uid,
            gid: user.gid,
            home: user.dir,
        })
    }

    fn ssh_path(&self) -> PathBuf {
        self.home.join(SSH_DIR)
    }

    fn keys_path(&self) -> PathBuf {
        self.ssh_path().join(AUTHORIZED_KEYS)
    }

    fn mkdir_error(&self, errno: i32) -> CommandError {
        CommandError::failed(format!(
            "failed to create directory '{}': {}",
            self.ssh_path().display(),
            super::strerror(errno)
        ))
    }

    fn read_error(&self, why: &str) -> CommandError {
        let path = self.keys_path();
        CommandError::failed(format!(
            "failed to read '{p}': Failed to open file \u{201C}{p}\u{201D}: {why}",
            p = path.display()
        ))
    }

    /// The lines of authorized_keys; an error when it (or `.ssh`) is missing, as in qemu-ga.
    fn read_keys(&self) -> Result<Vec<Vec<u8>>, CommandError> {
        let ssh = self
            .ssh_dir(false)?
            .ok_or_else(|| self.read_error(&super::strerror(libc::ENOENT)))?;
        self.read_lines(&ssh)?
            .ok_or_else(|| self.read_error(&super::strerror(libc::ENOENT)))
    }

    /// `~/.ssh`, opened without following a symlink; created (0700, the user's) when `create`.
    /// `None` when it does not exist and `create` is false.
    fn ssh_dir(&self, create: bool) -> Result<Option<OwnedFd>, CommandError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let home = match nix::fcntl::open(&self.home, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(nix::Error::ENOENT) if !create => return Ok(None),
            Err(e) if create => return Err(self.mkdir_error(e as i32)),
            Err(e) => return Err(self.read_error(&super::strerror(e as i32))),
        };
        let open = || openat(&home, SSH_DIR, flags | OFlag::O_NOFOLLOW, Mode::empty());
        let fd = match open() {
            Ok(fd) => fd,
            Err(nix::Error::ENOENT) if create => {
                mkdirat(&home, SSH_DIR, Mode::from_bits_truncate(0o700))
                    .map_err(|e| self.mkdir_error(e as i32))?;
                let fd = open().map_err(|e| self.mkdir_error(e as i32))?;
                self.own(&fd, 0o700, &self.ssh_path())?;
                fd
            }
            Err(nix::Error::ENOENT) => return Ok(None),
            Err(nix::Error::ELOOP | nix::Error::ENOTDIR) => {
                return Err(self.refuse(&self.ssh_path(), "is not a directory (a symlink?)"))
            }
            Err(e) if create => return Err(self.mkdir_error(e as i32)),
            Err(e) => return Err(self.read_error(&super::strerror(e as i32))),
        };
        let st = fstat(&fd).map_err(|e| self.read_error(&super::strerror(e as i32)))?;
        if st.st_uid != self.uid.as_raw() && st.st_uid != 0 {
            return Err(self.refuse(
                &self.ssh_path(),
                &format!("belongs to uid {}, not to the user", st.st_uid),
            ));
        }
        Ok(Some(fd))
    }

    fn refuse(&self, path: &Path, why: &str) -> CommandError {
        CommandError::failed(format!("refusing '{}': it {why}", path.display()))
    }

    /// chown to the user and chmod, through the descriptor (`path` names it in errors).
    fn own(&self, fd: &OwnedFd, mode: u32, path: &Path) -> Result<(), CommandError> {
        let fail = |what: &str, e: nix::Error| {
            CommandError::failed(format!(
                "failed to set {what} of '{}': {}",
                path.display(),
                super::strerror(e as i32)
            ))
        };
        fchown(fd, Some(self.uid), Some(self.gid)).map_err(|e| fail("ownership", e))?;
        fchmod(fd, Mode::from_bits_truncate(mode)).map_err(|e| fail("permissions", e))
    }

    /// authorized_keys' lines, `None` when it does not exist. A symlink, a non-regular file, a
    /// file with several links or an oversized file is refused.
    fn read_lines(&self, ssh: &OwnedFd) -> Result<Option<Vec<Vec<u8>>>, CommandError> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = match openat(ssh, AUTHORIZED_KEYS, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(nix::Error::ENOENT) => return Ok(None),
            Err(e) => return Err(self.read_error(&super::strerror(e as i32))),
        };
        let st = fstat(&fd).map_err(|e| self.read_error(&super::strerror(e as i32)))?;
        let regular = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
        if !regular || st.st_nlink != 1 {
            return Err(self.refuse(&self.keys_path(), "is not a regular file with one link"));
        }
        let mut data = Vec::new();
        File::from(fd)
            .take(MAX_FILE + 1)
            .read_to_end(&mut data)
            .map_err(|e| self.read_error(&errno_text(&e)))?;
        if data.len() as u64 > MAX_FILE {
            return Err(self.refuse(&self.keys_path(), "is larger than 4 MiB"));
        }
        Ok(Some(split_lines(&data)))
    }

    /// Replaces authorized_keys with `lines` (each ended by a newline), atomically.
    fn write_lines(&self, ssh: &OwnedFd, lines: &[Vec<u8>]) -> Result<(), CommandError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let tmp = format!(
            ".{AUTHORIZED_KEYS}.porthole-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let write_error = |why: String| {
            CommandError::failed(format!(
                "failed to write to '{}': {why}",
                self.keys_path().display()
            ))
        };
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(ssh, tmp.as_str(), flags, Mode::from_bits_truncate(0o600))
            .map_err(|e| write_error(super::strerror(e as i32)))?;
        let result = self.fill(fd, lines).and_then(|()| {
            renameat(ssh, tmp.as_str(), ssh, AUTHORIZED_KEYS)
                .map_err(|e| write_error(super::strerror(e as i32)))
        });
        if result.is_err() {
            let _ = unlinkat(ssh, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        result
    }

    fn fill(&self, fd: OwnedFd, lines: &[Vec<u8>]) -> Result<(), CommandError> {
        self.own(&fd, 0o600, &self.keys_path())?;
        let mut data = Vec::new();
        for line in lines {
            data.extend_from_slice(line);
            data.push(b'\n');
        }
        let mut file = File::from(fd);
        file.write_all(&data)
            .map_err(|e| errno_text(&e))
            .and_then(|()| fsync(&file).map_err(|e| super::strerror(e as i32)))
            .map_err(|why| {
                CommandError::failed(format!(
                    "failed to write to '{}': {why}",
                    self.keys_path().display()
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_checks_are_qemu_gas_plus_empty() {
        let bad = |k: &str| check_keys(&[k.to_string()]).err().map(|e| e.desc);
        assert_eq!(
            bad("#c").as_deref(),
            Some("invalid OpenSSH public key: '#c'")
        );
        assert_eq!(
            bad("a\nb").as_deref(),
            Some("invalid OpenSSH public key: 'a\nb'")
        );
        assert_eq!(bad("").as_deref(), Some("invalid OpenSSH public key: ''"));
        assert_eq!(
            bad(" ssh-rsa X y"),
            None,
            "leading blanks are qemu-ga's business too"
        );
    }

    #[test]
    fn lines_and_listing() {
        assert!(split_lines(b"").is_empty());
        assert_eq!(split_lines(b"a\n"), vec![b"a".to_vec()]);
        assert_eq!(
            split_lines(b"a\n\nb"),
            vec![b"a".to_vec(), vec![], b"b".to_vec()]
        );
        let lines = split_lines(b"# c\n ssh-rsa A x \n\nssh-ed25519 B y\n");
        assert_eq!(listed_keys(&lines), vec!["ssh-ed25519 B y", "ssh-rsa A x"]);
    }

    #[test]
    fn unknown_user_text() {
        let err = Account::lookup("no-such-user-porthole")
            .err()
            .map(|e| e.desc);
        assert_eq!(
            err.as_deref(),
            Some("failed to lookup user 'no-such-user-porthole': Success")
        );
    }
}
