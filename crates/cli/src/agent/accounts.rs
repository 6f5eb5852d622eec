//! Accounts: authorized SSH keys and passwords.

use super::Session;
use crate::cli::SshKeysAction;
use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use porthole_client::commands::{self as cmd, AuthorizedKeys};
use serde_json::json;
use std::io::{BufRead, IsTerminal};

impl Session {
    pub(super) fn ssh_keys(&mut self, action: SshKeysAction) -> Result<()> {
        match action {
            SshKeysAction::Get { user } => self.show_with(
                cmd::GUEST_SSH_GET_AUTHORIZED_KEYS.name,
                json!({ "username": user }),
                |keys: AuthorizedKeys| keys.keys.iter().map(|k| format!("{k}\n")).collect(),
            ),
            SshKeysAction::Add { user, keys } => {
                let count = keys.len();
                let arguments = json!({ "username": user, "keys": keys });
                self.query_with(cmd::GUEST_SSH_ADD_AUTHORIZED_KEYS.name, arguments)?;
                self.report(json!({}), || format!("added {count} key(s) for {user}\n"))
            }
            SshKeysAction::Remove { user, keys } => {
                let count = keys.len();
                let arguments = json!({ "username": user, "keys": keys });
                self.query_with(cmd::GUEST_SSH_REMOVE_AUTHORIZED_KEYS.name, arguments)?;
                self.report(json!({}), || format!("removed {count} key(s) for {user}\n"))
            }
        }
    }

    /// The password comes from standard input's first line (never from argv, which other
    /// users can read in /proc).
    pub(super) fn set_password(&mut self, user: &str, crypted: bool) -> Result<()> {
        let stdin = std::io::stdin();
        let terminal = stdin.is_terminal();
        if terminal {
            eprint!("password for {user}: ");
            set_echo(false);
        }
        let mut line = String::new();
        let read = stdin.lock().read_line(&mut line);
        if terminal {
            set_echo(true);
            eprintln!();
        }
        read.context("cannot read the password from standard input")?;
        let password = line.trim_end_matches(['\n', '\r']);
        if password.is_empty() {
            bail!("no password on standard input");
        }
        let arguments = json!({
            "username": user,
            "password": BASE64.encode(password),
            "crypted": crypted,
        });
        self.query_with(cmd::GUEST_SET_USER_PASSWORD.name, arguments)?;
        self.report(json!({}), || format!("password set for {user}\n"))
    }
}

/// Turns the terminal's echo off or on with stty(1), which works on the terminal it inherits as
/// standard input (best effort: without stty the password is echoed).
fn set_echo(on: bool) {
    let _ = std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status();
}
