//! libvirt: the agent of a libvirt domain, reached through `virsh qemu-agent-command`.
//!
//! libvirt connects to a domain's `org.qemu.guest_agent.0` channel itself and keeps it: nobody
//! else can open that socket while libvirtd (or virtqemud) runs the domain. Its one way in for
//! arbitrary commands is `virDomainQemuAgentCommand`, which takes a whole request and gives back
//! a whole reply after doing its own `guest-sync` on the channel. That is a request/response
//! exchange, not a byte stream, so this is a [`RequestTransport`] rather than a [`Transport`]:
//! pretending to be a stream would mean buffering writes until a JSON text is complete and
//! faking `guest-sync-delimited` replies the agent never sent. The client skips its own
//! handshake for such transports; libvirt's sync already guarantees that a reply is ours.
//!
//! We run `virsh` rather than linking libvirt: libvirt is LGPL (porthole's crates are
//! permissive), and virsh is what an operator on a libvirt host has anyway. It runs without a
//! shell, with `LC_ALL=C` so that its messages can be recognised, and every byte it prints is
//! read through a fixed bound. The request travels as one command-line argument, so it is
//! limited to Linux's `MAX_ARG_STRLEN` (128 KiB); the reply is limited by libvirt's RPC string
//! limit (4 MiB). The typed calls size their data chunks to fit ([`crate::Client`]'s
//! `request_data_limit` and `reply_data_limit`).
//!
//! libvirt turns the agent's `{"error": {"class", "desc"}}` into "unable to execute QEMU agent
//! command 'X': DESC" and drops the class; we rebuild [`ClientError::Agent`] from the text, with
//! the class recovered for qemu-ga's "has not been found" and "has been disabled" texts and
//! `GenericError` otherwise.
//!
//! [`Transport`]: super::Transport

mod process;

use super::RequestTransport;
use crate::error::{secs, ClientError};
use process::{run, RunError};
use std::ffi::OsString;
use std::io;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Linux's limit on one command-line argument (`MAX_ARG_STRLEN`), less its terminating NUL.
pub const MAX_REQUEST_BYTES: usize = 128 * 1024 - 1;
/// libvirt's limit on a string in an RPC message (`REMOTE_STRING_MAX`), which the reply is.
pub const MAX_REPLY_BYTES: usize = 4 << 20;
/// The most of virsh's message shown in an error.
const MAX_DETAIL_CHARS: usize = 1000;
/// The Debian package that ships virsh.
const VIRSH_PACKAGE: &str = "libvirt-clients";

/// Why a call through libvirt failed, with what to check.
#[derive(Debug, thiserror::Error)]
pub enum LibvirtError {
    #[error("cannot run {program} ({source}): install the Debian package {VIRSH_PACKAGE}")]
    VirshMissing { program: String, source: io::Error },

    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: io::Error },

    #[error(
        "cannot connect to libvirt at {uri}: {detail} (is the daemon, libvirtd or virtqemud, \
         running? is --libvirt-uri / LIBVIRT_DEFAULT_URI right?)"
    )]
    Connect { uri: String, detail: String },

    #[error(
        "libvirt at {uri} has no domain '{domain}' ({detail}): check the name with `virsh list \
         --all` and the connection URI (--libvirt-uri / LIBVIRT_DEFAULT_URI)"
    )]
    DomainNotFound {
        domain: String,
        uri: String,
        detail: String,
    },

    #[error("libvirt domain '{domain}' is not running ({detail}): start it first")]
    DomainNotRunning { domain: String, detail: String },

    #[error(
        "libvirt domain '{domain}' has no guest agent channel ({detail}): add <channel \
         type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel> to it"
    )]
    AgentNotConfigured { domain: String, detail: String },

    #[error(
        "the guest agent of libvirt domain '{domain}' is not connected ({detail}): is the agent \
         installed and running in the guest, listening on the virtio-serial port \
         org.qemu.guest_agent.0? (`virsh dumpxml {domain}` shows the channel's state)"
    )]
    AgentNotConnected { domain: String, detail: String },

    #[error(
        "the guest agent of libvirt domain '{domain}' did not answer {command} within {} \
         ({detail}): is the agent running in the guest, and not busy?",
        secs(*timeout)
    )]
    AgentTimeout {
        domain: String,
        command: String,
        timeout: Duration,
        detail: String,
    },

    #[error("virsh did not finish {command} within {} and was killed", secs(*timeout))]
    VirshTimeout { command: String, timeout: Duration },

    #[error("virsh qemu-agent-command {domain} failed ({status}): {detail}")]
    Failed {
        domain: String,
        status: String,
        detail: String,
    },
}

/// `virsh [-c URI] qemu-agent-command` for one domain.
#[derive(Debug, Clone)]
pub struct VirshTransport {
    domain: String,
    uri: Option<String>,
    program: OsString,
    /// Allowed beyond the agent's timeout: virsh connecting to the daemon, finding the domain.
    connect_timeout: Duration,
}

impl VirshTransport {
    /// The domain `domain` on `uri` (`None`: virsh's default, which honours
    /// `LIBVIRT_DEFAULT_URI`).
    pub fn new(domain: String, uri: Option<String>, connect_timeout: Duration) -> Self {
        Self {
            domain,
            uri,
            program: "virsh".into(),
            connect_timeout,
        }
    }

    /// Runs `program` instead of `virsh` from `PATH`.
    pub fn with_program(mut self, program: impl Into<OsString>) -> Self {
        self.program = program.into();
        self
    }

    /// virsh's arguments for one request; `--timeout` is whole seconds, at least one.
    fn args(&self, request: &str, timeout: Duration) -> Vec<OsString> {
        let seconds = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let mut args: Vec<OsString> = Vec::new();
        if let Some(uri) = &self.uri {
            args.extend(["--connect".into(), uri.into()]);
        }
        args.extend([
            "qemu-agent-command".into(),
            "--domain".into(),
            self.domain.as_str().into(),
            "--timeout".into(),
            seconds.max(1).to_string().into(),
            "--cmd".into(),
            request.into(),
        ]);
        args
    }

    fn uri_text(&self) -> String {
        match &self.uri {
            Some(uri) => uri.clone(),
            None => match std::env::var("LIBVIRT_DEFAULT_URI") {
                Ok(uri) if !uri.is_empty() => format!("{uri} (LIBVIRT_DEFAULT_URI)"),
                _ => "libvirt's default URI".into(),
            },
        }
    }

    fn spawn(&self, args: Vec<OsString>) -> Result<Child, LibvirtError> {
        let program = self.program.to_string_lossy().into_owned();
        Command::new(&self.program)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => LibvirtError::VirshMissing { program, source },
                _ => LibvirtError::Spawn { program, source },
            })
    }

    /// Turns virsh's complaint into the operator's likely cause.
    fn classify(
        &self,
        command: &str,
        timeout: Duration,
        status: ExitStatus,
        stderr: &[u8],
    ) -> ClientError {
        let detail = message(stderr);
        let domain = self.domain.clone();
        let has = |needle: &str| detail.contains(needle);
        if let Some(desc) = detail
            .split_once(AGENT_FAILED)
            .and_then(|(_, rest)| rest.split_once("': ").map(|(_, desc)| desc.to_string()))
        {
            return ClientError::Agent {
                class: agent_class(&desc).into(),
                desc,
            };
        }
        let error = if has("failed to connect to the hypervisor") {
            LibvirtError::Connect {
                uri: self.uri_text(),
                detail,
            }
        } else if has("failed to get domain") || has("Domain not found") {
            LibvirtError::DomainNotFound {
                domain,
                uri: self.uri_text(),
                detail,
            }
        } else if has("domain is not running") {
            LibvirtError::DomainNotRunning { domain, detail }
        } else if has("agent is not configured") {
            LibvirtError::AgentNotConfigured { domain, detail }
        } else if has("agent is not connected") {
            LibvirtError::AgentNotConnected { domain, detail }
        } else if has("not available for now") {
            LibvirtError::AgentTimeout {
                domain,
                command: command.into(),
                timeout,
                detail,
            }
        } else if has("Unable to encode message payload") {
            // The reply did not fit libvirt's RPC message (the request always does: it is far
            // smaller than one argument may be).
            return ClientError::ReplyTooLarge {
                command: command.into(),
                limit: MAX_REPLY_BYTES,
            };
        } else if has("Guest agent disappeared") {
            return ClientError::Closed {
                command: command.into(),
            };
        } else {
            LibvirtError::Failed {
                domain,
                status: status.to_string(),
                detail,
            }
        };
        error.into()
    }
}

/// libvirt's text for an agent's error reply, before the command name.
const AGENT_FAILED: &str = "unable to execute QEMU agent command '";

/// The agent's error class, recovered from qemu-ga's texts (libvirt passes on only `desc`).
fn agent_class(desc: &str) -> &'static str {
    if desc.starts_with("The command ") && desc.ends_with(" has not been found") {
        "CommandNotFound"
    } else if desc.starts_with("The command ") && desc.contains(" has been disabled") {
        "CommandDisabled"
    } else {
        "GenericError"
    }
}

/// virsh's error lines without their `error: ` prefixes, on one line, cut to a readable length.
fn message(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("; ");
    if joined.is_empty() {
        return "no message".into();
    }
    let mut cut: String = joined
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DETAIL_CHARS)
        .collect();
    if joined.chars().count() > MAX_DETAIL_CHARS {
        cut.push_str("...");
    }
    cut
}

impl RequestTransport for VirshTransport {
    fn exchange(
        &mut self,
        command: &str,
        request: &[u8],
        timeout: Duration,
        max_reply: usize,
    ) -> Result<Vec<u8>, ClientError> {
        if request.len() > MAX_REQUEST_BYTES {
            return Err(ClientError::RequestTooLarge {
                command: command.into(),
                endpoint: self.describe(),
                size: request.len(),
                limit: MAX_REQUEST_BYTES,
            });
        }
        // The client builds requests with serde_json: UTF-8, control characters escaped.
        let request = String::from_utf8_lossy(request);
        let limit = max_reply.min(MAX_REPLY_BYTES);
        let budget = timeout.saturating_add(self.connect_timeout);
        let child = self.spawn(self.args(&request, timeout))?;
        let run = run(child, Instant::now() + budget, limit).map_err(|e| match e {
            RunError::TimedOut => LibvirtError::VirshTimeout {
                command: command.into(),
                timeout: budget,
            }
            .into(),
            RunError::Io(source) => ClientError::Io {
                endpoint: self.describe(),
                command: command.into(),
                source,
            },
        })?;
        if !run.status.success() {
            return Err(self.classify(command, timeout, run.status, &run.stderr.bytes));
        }
        if run.stdout.overflow {
            return Err(ClientError::ReplyTooLarge {
                command: command.into(),
                limit,
            });
        }
        Ok(run.stdout.bytes.trim_ascii().to_vec())
    }

    fn describe(&self) -> String {
        match &self.uri {
            Some(uri) => format!("libvirt:{}@{uri}", self.domain),
            None => format!("libvirt:{}", self.domain),
        }
    }

    fn max_request_bytes(&self) -> usize {
        MAX_REQUEST_BYTES
    }

    fn max_reply_bytes(&self) -> usize {
        MAX_REPLY_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport() -> VirshTransport {
        VirshTransport::new("vm1".into(), Some("qemu:///system".into()), Duration::ZERO)
    }

    #[test]
    fn arguments_need_no_shell() {
        let args = transport().args(r#"{"execute":"guest-ping"}"#, Duration::from_millis(1500));
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--connect",
                "qemu:///system",
                "qemu-agent-command",
                "--domain",
                "vm1",
                "--timeout",
                "2",
                "--cmd",
                r#"{"execute":"guest-ping"}"#
            ]
        );
        let short = VirshTransport::new("vm1".into(), None, Duration::ZERO)
            .args("{}", Duration::from_millis(1));
        assert_eq!(
            short.first().map(|a| a.to_string_lossy().into_owned()),
            Some("qemu-agent-command".into())
        );
        assert!(short.iter().any(|a| a == "1"));
    }

    #[test]
    fn messages_name_the_cause() {
        let t = transport();
        let status = ExitStatus::default();
        let classify = |text: &str| {
            t.classify(
                "guest-ping",
                Duration::from_secs(3),
                status,
                text.as_bytes(),
            )
        };
        type Check = fn(&ClientError) -> bool;
        let cases: [(&str, Check); 8] = [
            ("error: Unable to encode message payload\n", |e| {
                matches!(e, ClientError::ReplyTooLarge { .. })
            }),
            ("error: failed to get domain 'vm1'\n", |e| {
                matches!(e, ClientError::Libvirt(LibvirtError::DomainNotFound { .. }))
            }),
            ("error: Requested operation is not valid: domain is not running\n", |e| {
                matches!(e, ClientError::Libvirt(LibvirtError::DomainNotRunning { .. }))
            }),
            ("error: argument unsupported: QEMU guest agent is not configured\n", |e| {
                matches!(e, ClientError::Libvirt(LibvirtError::AgentNotConfigured { .. }))
            }),
            ("error: Guest agent is not responding: QEMU guest agent is not connected\n", |e| {
                matches!(e, ClientError::Libvirt(LibvirtError::AgentNotConnected { .. }))
            }),
            ("error: Guest agent is not responding: Guest agent not available for now\n", |e| {
                e.is_timeout()
            }),
            ("error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/x': No such file or directory\n", |e| {
                matches!(e, ClientError::Libvirt(LibvirtError::Connect { .. }))
            }),
            ("error: internal error: unable to execute QEMU agent command 'guest-x': The command guest-x has not been found\n", |e| {
                e.is_command_not_found()
            }),
        ];
        for (text, check) in cases {
            let error = classify(text);
            assert!(check(&error), "{text} → {error:?}");
        }
        let agent = classify("error: internal error: unable to execute QEMU agent command 'guest-file-open': Failed to open file '/n': No such file or directory");
        assert_eq!(
            agent.to_string(),
            "agent error (GenericError): Failed to open file '/n': No such file or directory"
        );
        assert!(classify("error: something else")
            .to_string()
            .contains("something else"));
    }

    #[test]
    fn messages_are_bounded() {
        let long = format!("error: {}\u{1b}[2J", "x".repeat(5000));
        let text = message(long.as_bytes());
        assert!(text.len() <= MAX_DETAIL_CHARS + 3);
        assert!(!text.contains('\u{1b}'));
        assert_eq!(message(b""), "no message");
    }

    #[test]
    fn a_missing_virsh_names_the_package() {
        let mut t = transport().with_program("/nonexistent/virsh");
        let error = t.exchange("guest-ping", b"{}", Duration::from_secs(1), 1000);
        let text = error.map(drop).map_err(|e| e.to_string());
        assert!(
            matches!(&text, Err(t) if t.contains("libvirt-clients")),
            "{text:?}"
        );
    }
}
