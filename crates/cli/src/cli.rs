//! The command-line grammar. The top level is a [`Command`] enum so that later groups
//! (`porthole ls IMAGE`, `porthole inspect IMAGE`, ...) slot in beside `agent`.

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use porthole_client::transport::{parse_hybrid_vsock, parse_vsock};
use porthole_client::Endpoint;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "porthole",
    version,
    about = "See into virtual machines: talk to their guest agents, read their disk images"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Talk to a guest agent (qemu-ga or porthole-agent) through its host-side socket or libvirt
    Agent(AgentArgs),
    /// List the partitions, volumes and filesystems on a VM's disk images
    Filesystems(FilesystemsArgs),
    /// List a directory inside a VM's disk images (no root, no mounting, no VM)
    Ls(LsArgs),
    /// Copy a file from inside a VM's disk images to standard output
    Cat(CatArgs),
    /// Tell what is inside a VM's disk images: operating systems, versions, applications
    Inspect(InspectArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// A readable summary (the default on a terminal)
    Text,
    /// porthole's native report (the default when piped)
    Json,
    /// virt-inspector's XML (without porthole's Linux extras)
    Xml,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The VM's disk images, in the order the VM attaches them
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<PathBuf>,
    /// Output format (default: text on a terminal, else json)
    #[arg(long, value_enum)]
    pub format: Option<ReportFormat>,
    /// Do not read the package databases
    #[arg(long)]
    pub no_applications: bool,
}

#[derive(Debug, Args)]
pub struct FilesystemsArgs {
    /// The VM's disk images, in the order the VM attaches them
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<PathBuf>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// Which filesystem tree to read, for `ls` and `cat`.
#[derive(Debug, Args)]
pub struct GuestArgs {
    /// The VM's disk images (in attach order), then the path inside the guest
    #[arg(value_name = "IMAGE... PATH", required = true, num_args = 2..)]
    pub images_then_path: Vec<String>,
    /// The root filesystem's device (e.g. /dev/sda2, /dev/vg/root) when the disks hold several
    /// operating systems, or a filesystem to read on its own
    #[arg(long, value_name = "DEVICE")]
    pub root: Option<String>,
}

impl GuestArgs {
    /// The images and the guest path (clap guarantees at least two values).
    pub fn split(&self) -> (Vec<PathBuf>, String) {
        let (path, images) = self
            .images_then_path
            .split_last()
            .map(|(p, i)| (p.clone(), i.iter().map(PathBuf::from).collect()))
            .unwrap_or_default();
        (images, path)
    }
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub guest: GuestArgs,
    /// Long listing: type and mode, owner, size, modification time, link target
    #[arg(short, long)]
    pub long: bool,
    /// Print JSON (every field of the long listing)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    #[command(flatten)]
    pub guest: GuestArgs,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["socket", "vsock", "hybrid_vsock", "domain"])))]
pub struct AgentArgs {
    /// The agent's host-side unix socket (the QEMU chardev or libvirt channel)
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The agent's vsock address (AF_VSOCK; QEMU's vhost-vsock-pci)
    #[arg(long, value_name = "CID:PORT", value_parser = vsock_endpoint)]
    pub vsock: Option<Endpoint>,
    /// A hybrid vsock socket (Firecracker, Cloud Hypervisor, vhost-device-vsock) and guest port
    #[arg(long, value_name = "PATH:PORT", value_parser = hybrid_vsock_endpoint)]
    pub hybrid_vsock: Option<Endpoint>,
    /// A libvirt domain (name, UUID or id) whose agent channel libvirt owns: calls go through
    /// `virsh qemu-agent-command`
    #[arg(long, value_name = "NAME")]
    pub domain: Option<String>,
    /// libvirt's connection URI for --domain (default: LIBVIRT_DEFAULT_URI, else virsh's default)
    #[arg(long, value_name = "URI", conflicts_with_all = ["socket", "vsock", "hybrid_vsock"])]
    pub libvirt_uri: Option<String>,
    /// Print the agent's raw return value as JSON
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for the handshake and for each reply
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs, global = true)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Check that the agent answers (guest-ping)
    Ping,
    /// The agent's version and commands (guest-info)
    Info,
    /// The guest's operating system (guest-get-osinfo)
    Os,
    /// The guest's host name (guest-get-host-name)
    Hostname,
    /// The guest's clock: `time` or `time get` reads it, `time set` and `time sync` set it
    Time {
        #[command(subcommand)]
        action: Option<TimeAction>,
    },
    /// The guest's time zone (guest-get-timezone)
    Timezone,
    /// Users logged in to the guest (guest-get-users)
    Users,
    /// Run a program in the guest; exits with its status. Streams its output with
    /// porthole-agent (guest-porthole-exec), else waits for it (guest-exec)
    Exec(Box<ExecArgs>),
    /// Copy a guest file to standard output (guest-file-open/read/close)
    Cat {
        /// The file's path inside the guest
        guest_path: String,
    },
    /// Copy a file between host and guest: `cp guest:PATH LOCAL` or `cp LOCAL guest:PATH`
    /// (`:PATH` also names a guest path). SHA-256 checked by porthole-agent, locally with qemu-ga
    Cp(CpArgs),
    /// Send any command and print the reply: '{"execute": ...}' or NAME [ARGS-JSON]
    Call {
        /// A full request object, or a command name
        request: String,
        /// The arguments object, when REQUEST is a command name
        arguments: Option<String>,
    },
    /// Shut down, halt or reboot the guest (guest-shutdown)
    Shutdown {
        #[arg(long, value_enum, default_value_t = ShutdownMode::Powerdown)]
        mode: ShutdownMode,
        /// Seconds to wait for an error; silence means the guest is going down
        #[arg(long, value_name = "SECS", default_value = "3", value_parser = parse_secs)]
        wait: Duration,
    },
    /// Reboot the guest (guest-shutdown, mode reboot)
    Reboot {
        /// Seconds to wait for an error; silence means the guest is going down
        #[arg(long, value_name = "SECS", default_value = "3", value_parser = parse_secs)]
        wait: Duration,
    },
    /// Halt the guest (guest-shutdown, mode halt)
    Halt {
        /// Seconds to wait for an error; silence means the guest is going down
        #[arg(long, value_name = "SECS", default_value = "3", value_parser = parse_secs)]
        wait: Duration,
    },
    /// Freeze the guest's filesystems, all or the given mount points (guest-fsfreeze-freeze[-list])
    Fsfreeze {
        /// A mount point to freeze (repeat; default: every freezable filesystem)
        #[arg(long = "mountpoint", value_name = "M")]
        mountpoints: Vec<String>,
    },
    /// Thaw the guest's filesystems (guest-fsfreeze-thaw)
    Thaw,
    /// Whether the guest's filesystems are frozen (guest-fsfreeze-status)
    FreezeStatus,
    /// Mounted filesystems with sizes and disks (guest-get-fsinfo)
    Fsinfo,
    /// Disks and partitions (guest-get-disks)
    Disks,
    /// Discard unused blocks on the guest's filesystems (guest-fstrim)
    Fstrim {
        /// Minimum contiguous free range to discard, in bytes
        #[arg(long, value_name = "N")]
        minimum: Option<i64>,
    },
    /// Network interfaces and addresses (guest-network-get-interfaces)
    Ifaddr,
    /// The routing table (guest-network-get-route)
    Routes,
    /// Manage a user's ~/.ssh/authorized_keys (guest-ssh-*-authorized-keys)
    SshKeys {
        #[command(subcommand)]
        action: SshKeysAction,
    },
    /// Set a user's password, read from standard input (guest-set-user-password)
    SetPassword {
        /// The account
        user: String,
        /// The input is a crypt(3) hash, not a clear-text password
        #[arg(long)]
        crypted: bool,
    },
    /// Logical CPUs (guest-get-vcpus)
    Vcpus,
    /// Load averages (guest-get-load)
    Load,
    /// CPU, memory, swap, load, uptime, filesystems, interfaces (guest-porthole-telemetry)
    Telemetry,
    /// Processes (guest-porthole-processes)
    Ps {
        /// List at most N processes
        #[arg(long, value_name = "N")]
        max: Option<i64>,
    },
    /// systemd units (guest-porthole-services)
    Services,
}

#[derive(Debug, Subcommand)]
pub enum TimeAction {
    /// Read the guest's clock (the default; guest-get-time)
    Get,
    /// Set the guest's clock (guest-set-time)
    Set {
        /// Nanoseconds since the epoch
        #[arg(
            long,
            value_name = "N",
            conflicts_with = "now",
            required_unless_present = "now"
        )]
        ns: Option<i64>,
        /// The host's current time
        #[arg(long)]
        now: bool,
    },
    /// Sync the guest's clock: to the host's time with --now, else through the guest's own
    /// NTP client (guest-porthole-time-sync)
    Sync {
        /// Set it to the host's current time
        #[arg(long)]
        now: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SshKeysAction {
    /// List the user's authorized keys
    Get { user: String },
    /// Add keys (duplicates are skipped)
    Add {
        user: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Remove keys
    Remove {
        user: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Source: guest:PATH or a local file
    pub source: String,
    /// Destination: a local file or guest:PATH
    pub destination: String,
    /// Continue an interrupted transfer from where it stopped
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Do not capture the program's output (only its exit status comes back)
    #[arg(long)]
    pub no_capture: bool,
    /// Feed this file ('-' for our standard input) to the program's standard input.
    /// With porthole-agent a non-terminal standard input is passed through anyway
    #[arg(long, value_name = "FILE|-")]
    pub stdin: Option<PathBuf>,
    /// Set an environment variable; note that guest-exec then replaces the whole environment
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<String>,
    /// Give up waiting for the program after SECS (default: wait until it exits)
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub max_wait: Option<Duration>,
    /// Run as this user (porthole-agent only)
    #[arg(long, value_name = "U")]
    pub user: Option<String>,
    /// Run with this group (porthole-agent only)
    #[arg(long, value_name = "G")]
    pub group: Option<String>,
    /// Working directory (porthole-agent only)
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// Kill the program after SECS and exit 124, as timeout(1) does (porthole-agent only;
    /// `--timeout` is the wait for each reply)
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub time_limit: Option<Duration>,
    /// The program (looked up in the guest's PATH) and its arguments
    #[arg(
        value_name = "PROGRAM",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

impl ExecArgs {
    /// Whether an option only guest-porthole-exec understands was given.
    pub fn porthole_only(&self) -> Option<&'static str> {
        [
            (self.user.is_some(), "--user"),
            (self.group.is_some(), "--group"),
            (self.cwd.is_some(), "--cwd"),
            (self.time_limit.is_some(), "--time-limit"),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShutdownMode {
    Powerdown,
    Halt,
    Reboot,
}

impl AgentArgs {
    /// Where the agent is (clap guarantees exactly one of the four options).
    pub fn endpoint(&self) -> Option<Endpoint> {
        let libvirt = |domain: &String| Endpoint::Libvirt {
            domain: domain.clone(),
            uri: self.libvirt_uri.clone(),
        };
        self.socket
            .clone()
            .map(Endpoint::Unix)
            .or_else(|| self.vsock.clone())
            .or_else(|| self.hybrid_vsock.clone())
            .or_else(|| self.domain.as_ref().map(libvirt))
    }
}

fn vsock_endpoint(text: &str) -> Result<Endpoint, String> {
    parse_vsock(text).map(|(cid, port)| Endpoint::Vsock { cid, port })
}

fn hybrid_vsock_endpoint(text: &str) -> Result<Endpoint, String> {
    parse_hybrid_vsock(text).map(|(path, port)| Endpoint::HybridVsock { path, port })
}

impl ShutdownMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownMode::Powerdown => "powerdown",
            ShutdownMode::Halt => "halt",
            ShutdownMode::Reboot => "reboot",
        }
    }
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("'{text}' is not a positive number of seconds"))
}

fn parse_env(text: &str) -> Result<String, String> {
    match text.split_once('=') {
        Some((key, _)) if !key.is_empty() => Ok(text.to_string()),
        _ => Err(format!("'{text}' is not of the form KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exec_takes_the_rest_as_the_command() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from([
            "porthole", "agent", "--socket", "s", "exec", "--env", "A=1", "--", "ls", "-l",
        ])?;
        let Command::Agent(AgentArgs {
            command: AgentCommand::Exec(exec),
            ..
        }) = cli.command
        else {
            panic!("not exec");
        };
        assert_eq!(exec.command, ["ls", "-l"]);
        assert_eq!(exec.env, ["A=1"]);
        Ok(())
    }

    #[test]
    fn vsock_targets() -> Result<(), clap::Error> {
        let endpoint = |args: &[&str]| -> Result<Option<Endpoint>, clap::Error> {
            let Command::Agent(agent) = Cli::try_parse_from(args)?.command else {
                panic!("not agent");
            };
            Ok(agent.endpoint())
        };
        assert_eq!(
            endpoint(&["porthole", "agent", "--vsock", "3:1234", "ping"])?,
            Some(Endpoint::Vsock { cid: 3, port: 1234 })
        );
        assert_eq!(
            endpoint(&[
                "porthole",
                "agent",
                "--hybrid-vsock",
                "/run/v.sock:52",
                "os"
            ])?,
            Some(Endpoint::HybridVsock {
                path: "/run/v.sock".into(),
                port: 52
            })
        );
        assert_eq!(
            endpoint(&["porthole", "agent", "--socket", "/s", "os"])?,
            Some(Endpoint::Unix("/s".into()))
        );
        assert_eq!(
            endpoint(&["porthole", "agent", "--domain", "vm1", "ping"])?,
            Some(Endpoint::Libvirt {
                domain: "vm1".into(),
                uri: None
            })
        );
        assert_eq!(
            endpoint(&[
                "porthole",
                "agent",
                "--domain",
                "vm1",
                "--libvirt-uri",
                "qemu:///system",
                "ping"
            ])?,
            Some(Endpoint::Libvirt {
                domain: "vm1".into(),
                uri: Some("qemu:///system".into())
            })
        );
        Ok(())
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &[
                "porthole",
                "agent",
                "--socket",
                "s",
                "--timeout",
                "-1",
                "ping",
            ][..],
            &[
                "porthole", "agent", "--socket", "s", "exec", "--env", "NOEQ", "ls",
            ],
            &[
                "porthole", "agent", "--socket", "s", "shutdown", "--mode", "off",
            ],
            &["porthole", "agent", "ping"],
            &[
                "porthole", "agent", "--socket", "s", "--vsock", "3:1", "ping",
            ],
            &["porthole", "agent", "--vsock", "3", "ping"],
            &["porthole", "agent", "--hybrid-vsock", "/run/v.sock", "ping"],
            &[
                "porthole",
                "agent",
                "--socket",
                "s",
                "--libvirt-uri",
                "qemu:///system",
                "ping",
            ],
            &[
                "porthole", "agent", "--socket", "s", "--domain", "d", "ping",
            ],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
