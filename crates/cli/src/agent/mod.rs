//! `porthole agent ...`: talks to a guest agent through porthole-client.
//!
//! Each query fetches the raw return value: `--json` prints it untouched (members this version
//! does not know about survive), the human form decodes it with the protocol crate's types.
//! One module per command group; this one holds the session and the basic queries.

mod accounts;
mod copy;
mod exec;
mod network;
mod storage;
mod system;

use crate::cli::{AgentArgs, AgentCommand};
use crate::output::{key_values, table, utc_offset, utc_timestamp, yes_no};
use anyhow::{bail, Context, Result};
use porthole_client::commands::{self as cmd, AgentInfo, OsInfo, Timezone, User};
use porthole_client::{Client, ClientError, Options};
use serde_json::{Map, Value};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// How long `call` waits for an error from a command that has no success response.
const NO_REPLY_WAIT: Duration = Duration::from_secs(3);
/// Commands that send nothing on success (qemu's schema marks them `success-response: false`).
const NO_REPLY_COMMANDS: &[&str] = &[
    "guest-shutdown",
    "guest-suspend-disk",
    "guest-suspend-ram",
    "guest-suspend-hybrid",
];
/// Bytes per guest-file-read in `cat`.
const CAT_CHUNK: u64 = 1 << 20;

pub fn run(args: AgentArgs) -> Result<ExitCode> {
    let options = Options {
        connect_timeout: args.timeout,
        handshake_timeout: args.timeout,
        call_timeout: args.timeout,
        ..Options::default()
    };
    let endpoint = args
        .endpoint()
        .context("give --socket, --vsock, --hybrid-vsock or --domain")?;
    let mut session = Session {
        client: Client::connect(&endpoint, options)?,
        json: args.json,
        timeout: args.timeout,
    };
    match args.command {
        AgentCommand::Ping => session.ping()?,
        AgentCommand::Info => session.info()?,
        AgentCommand::Os => session.os()?,
        AgentCommand::Hostname => session.hostname()?,
        AgentCommand::Time { action } => session.time(action)?,
        AgentCommand::Timezone => session.timezone()?,
        AgentCommand::Users => session.users()?,
        AgentCommand::Exec(exec) => return session.exec(*exec),
        AgentCommand::Cat { guest_path } => session.cat(&guest_path)?,
        AgentCommand::Call { request, arguments } => session.call(&request, arguments)?,
        AgentCommand::Shutdown { mode, wait } => session.shutdown(mode.as_str(), wait)?,
        AgentCommand::Reboot { wait } => session.shutdown("reboot", wait)?,
        AgentCommand::Halt { wait } => session.shutdown("halt", wait)?,
        AgentCommand::Cp(cp) => session.cp(cp)?,
        AgentCommand::Fsfreeze { mountpoints } => session.fsfreeze(mountpoints)?,
        AgentCommand::Thaw => session.thaw()?,
        AgentCommand::FreezeStatus => session.freeze_status()?,
        AgentCommand::Fsinfo => session.fsinfo()?,
        AgentCommand::Disks => session.disks()?,
        AgentCommand::Fstrim { minimum } => session.fstrim(minimum)?,
        AgentCommand::Ifaddr => session.ifaddr()?,
        AgentCommand::Routes => session.routes()?,
        AgentCommand::SshKeys { action } => session.ssh_keys(action)?,
        AgentCommand::SetPassword { user, crypted } => session.set_password(&user, crypted)?,
        AgentCommand::Vcpus => session.vcpus()?,
        AgentCommand::Load => session.load()?,
        AgentCommand::Telemetry => session.telemetry()?,
        AgentCommand::Ps { max } => session.ps(max)?,
        AgentCommand::Services => session.services()?,
    }
    Ok(ExitCode::SUCCESS)
}

struct Session {
    client: Client,
    json: bool,
    timeout: Duration,
}

impl Session {
    /// The raw return value of a command with arguments.
    fn query_with(&mut self, command: &str, arguments: Value) -> Result<Value> {
        self.client
            .call(command, arguments, self.timeout)
            .map_err(|e| explain_missing(e, command))
    }

    /// Prints the raw value with `--json`, else decodes it and prints `human(decoded)`.
    fn show<T: serde::de::DeserializeOwned>(
        &mut self,
        command: &str,
        human: impl FnOnce(T) -> String,
    ) -> Result<()> {
        self.show_with(command, Value::Null, human)
    }

    /// [`Session::show`] for a command with arguments.
    fn show_with<T: serde::de::DeserializeOwned>(
        &mut self,
        command: &str,
        arguments: Value,
        human: impl FnOnce(T) -> String,
    ) -> Result<()> {
        let value = self.query_with(command, arguments)?;
        if self.json {
            return print_json(&value);
        }
        let decoded: T = serde_json::from_value(value)
            .with_context(|| format!("unexpected reply to {command}"))?;
        crate::output::emit(&human(decoded)).context("cannot write to standard output")
    }

    fn ping(&mut self) -> Result<()> {
        self.show(cmd::GUEST_PING.name, |_: Value| "ok\n".to_string())
    }

    fn info(&mut self) -> Result<()> {
        self.show(cmd::GUEST_INFO.name, |info: AgentInfo| {
            let mut commands = info.supported_commands;
            commands.sort_by(|a, b| a.name.cmp(&b.name));
            let rows: Vec<Vec<String>> = commands
                .into_iter()
                .map(|c| {
                    vec![
                        c.name,
                        yes_no(c.enabled).into(),
                        yes_no(c.success_response).into(),
                    ]
                })
                .collect();
            format!(
                "version: {}\n{}",
                info.version,
                table(&["COMMAND", "ENABLED", "SUCCESS-RESPONSE"], &rows)
            )
        })
    }

    fn os(&mut self) -> Result<()> {
        self.show(cmd::GUEST_GET_OSINFO.name, |os: OsInfo| {
            key_values(&[
                ("pretty-name", os.pretty_name),
                ("name", os.name),
                ("id", os.id),
                ("version", os.version),
                ("version-id", os.version_id),
                ("variant", os.variant),
                ("variant-id", os.variant_id),
                ("kernel-release", os.kernel_release),
                ("kernel-version", os.kernel_version),
                ("machine", os.machine),
            ])
        })
    }

    fn hostname(&mut self) -> Result<()> {
        self.show(cmd::GUEST_GET_HOST_NAME.name, |h: cmd::HostName| {
            format!("{}\n", h.host_name)
        })
    }

    fn timezone(&mut self) -> Result<()> {
        self.show(cmd::GUEST_GET_TIMEZONE.name, |tz: Timezone| {
            key_values(&[("zone", tz.zone), ("offset", Some(utc_offset(tz.offset)))])
        })
    }

    fn users(&mut self) -> Result<()> {
        self.show(cmd::GUEST_GET_USERS.name, |users: Vec<User>| {
            if users.is_empty() {
                return "no users logged in\n".to_string();
            }
            let rows: Vec<Vec<String>> = users
                .into_iter()
                .map(|u| {
                    vec![
                        u.user,
                        u.domain.unwrap_or_default(),
                        login_time(u.login_time),
                    ]
                })
                .collect();
            table(&["USER", "DOMAIN", "LOGIN-TIME"], &rows)
        })
    }

    fn cat(&mut self, path: &str) -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        self.client.read_file_to(path, CAT_CHUNK, &mut stdout)?;
        stdout.flush().context("cannot write to standard output")
    }

    fn call(&mut self, request: &str, arguments: Option<String>) -> Result<()> {
        let (command, arguments) = parse_call(request, arguments.as_deref())?;
        if NO_REPLY_COMMANDS.contains(&command.as_str()) {
            self.client
                .call_no_reply(&command, arguments, NO_REPLY_WAIT.min(self.timeout))?;
            return Ok(());
        }
        let value = self.client.call(&command, arguments, self.timeout)?;
        print_json(&value)
    }

    fn shutdown(&mut self, mode: &str, wait: Duration) -> Result<()> {
        self.client.shutdown(Some(mode), wait)?;
        if !self.json {
            println!("shutdown requested (mode {mode})");
        }
        Ok(())
    }
}

/// Says why a porthole extension is unknown: the agent is qemu-ga (or an older porthole-agent).
fn explain_missing(error: ClientError, command: &str) -> anyhow::Error {
    let unknown = matches!(&error, ClientError::Agent { class, .. } if class == "CommandNotFound");
    if unknown && command.starts_with(cmd::PORTHOLE_PREFIX) {
        return anyhow::Error::new(error).context(format!(
            "{command} is one of porthole-agent's extensions; this agent lacks it (is it qemu-ga?)"
        ));
    }
    error.into()
}

fn print_json(value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    crate::output::emit(&text).context("cannot write to standard output")
}

/// A login time (fractional seconds since the epoch) as a UTC timestamp, to the second.
fn login_time(secs: f64) -> String {
    if secs.is_finite() {
        utc_timestamp(secs.floor() as i64, 0)
    } else {
        secs.to_string()
    }
}

/// Accepts `{"execute": NAME, "arguments": {...}?}` or NAME plus an optional arguments object.
fn parse_call(request: &str, arguments: Option<&str>) -> Result<(String, Value)> {
    if !request.trim_start().starts_with('{') {
        let arguments = match arguments {
            Some(text) => serde_json::from_str(text).context("ARGS-JSON is not valid JSON")?,
            None => Value::Null,
        };
        if !(arguments.is_null() || arguments.is_object()) {
            bail!("ARGS-JSON must be a JSON object");
        }
        return Ok((request.to_string(), arguments));
    }
    if arguments.is_some() {
        bail!("give either a full request object or NAME [ARGS-JSON], not both");
    }
    let mut object: Map<String, Value> =
        serde_json::from_str(request).context("the request is not a valid JSON object")?;
    if let Some(extra) = object
        .keys()
        .find(|k| k.as_str() != "execute" && k.as_str() != "arguments")
    {
        bail!("unsupported request member '{extra}' (only 'execute' and 'arguments')");
    }
    let Some(Value::String(command)) = object.remove("execute") else {
        bail!("the request needs a string member 'execute'");
    };
    let arguments = object.remove("arguments").unwrap_or(Value::Null);
    if !arguments.is_object() && !arguments.is_null() {
        bail!("the request's 'arguments' must be an object");
    }
    Ok((command, arguments))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn call_forms() -> Result<()> {
        assert_eq!(
            parse_call("guest-ping", None)?,
            ("guest-ping".into(), Value::Null)
        );
        assert_eq!(
            parse_call("guest-sync", Some(r#"{"id": 1}"#))?,
            ("guest-sync".into(), json!({"id": 1}))
        );
        assert_eq!(
            parse_call(
                r#" {"execute": "guest-sync", "arguments": {"id": 2}}"#,
                None
            )?,
            ("guest-sync".into(), json!({"id": 2}))
        );
        assert!(parse_call("guest-sync", Some("[1]")).is_err());
        assert!(parse_call(r#"{"execute": 1}"#, None).is_err());
        assert!(parse_call(r#"{"execute": "x", "id": 1}"#, None).is_err());
        assert!(parse_call(r#"{"execute": "x"}"#, Some("{}")).is_err());
        Ok(())
    }
}
