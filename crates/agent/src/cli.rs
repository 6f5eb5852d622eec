//! qemu-ga's command line, so service files and scripts written for qemu-ga work unchanged.

use crate::config::{
    split_list, Config, ConfigError, FileConfig, KvmManagerConfig, Listener, Method,
    DEFAULT_CONFIG_PATH, DEFAULT_FSFREEZE_HOOK, KVMMANAGER_PORT, QEMU_GA_CONFIG_PATH,
};
use crate::policy::Profile;
use clap::Parser;
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(
    name = "porthole-agent",
    about = "porthole guest agent (speaks the QEMU guest agent protocol and JSON-RPC 2.0)",
    disable_version_flag = true,
    // getopt's rule, which qemu-ga follows: a repeated option's last value wins.
    args_override_self = true
)]
pub struct Args {
    /// Transport: virtio-serial, isa-serial, unix-listen or vsock-listen.
    #[arg(short = 'm', long = "method")]
    pub method: Option<String>,
    /// Device or socket path (virtio port name, /dev/ttyS0, socket path, or CID:PORT for vsock).
    // getopt takes the next word as the value even when it starts with '-' (vsock's `-1:PORT`).
    #[arg(short = 'p', long = "path", allow_hyphen_values = true)]
    pub path: Option<String>,
    /// Log file (default: standard error).
    #[arg(short = 'l', long = "logfile")]
    pub logfile: Option<PathBuf>,
    /// PID file, locked while the agent runs.
    #[arg(short = 'f', long = "pidfile")]
    pub pidfile: Option<PathBuf>,
    /// Enable the fsfreeze hook, optionally at PATH (default /etc/qemu/fsfreeze-hook).
    #[arg(short = 'F', long = "fsfreeze-hook", num_args = 0..=1, require_equals = true,
          default_missing_value = DEFAULT_FSFREEZE_HOOK)]
    pub fsfreeze_hook: Option<PathBuf>,
    /// Thaw frozen filesystems after SECONDS without a guest-fsfreeze-thaw (0: never;
    /// default 600).
    #[arg(long = "fsfreeze-auto-thaw", value_name = "SECONDS")]
    pub fsfreeze_auto_thaw: Option<u64>,
    /// Directory for persistent state (file handle counter, frozen marker).
    #[arg(short = 't', long = "statedir")]
    pub statedir: Option<PathBuf>,
    /// Verbose logging.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Print the version and exit.
    #[arg(short = 'V', long = "version")]
    pub version: bool,
    /// Run in the background.
    #[arg(short = 'd', long = "daemonize")]
    pub daemonize: bool,
    /// Comma-separated commands to disable ('?' lists them).
    #[arg(short = 'b', long = "block-rpcs", visible_alias = "blacklist")]
    pub block_rpcs: Option<String>,
    /// Comma-separated commands to allow; all others are disabled ('?' lists them).
    #[arg(short = 'a', long = "allow-rpcs")]
    pub allow_rpcs: Option<String>,
    /// Configuration file (porthole TOML, or qemu-ga's keyfile with a [general] group).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as a keyfile and exit.
    #[arg(short = 'D', long = "dump-conf")]
    pub dump_conf: bool,
    /// Keep retrying when the device path does not exist yet (hotplugged channels).
    #[arg(short = 'r', long = "retry-path")]
    pub retry_path: bool,
    /// Policy profile: default (like qemu-ga) or hardened (see docs/policy.md).
    #[arg(long = "profile")]
    pub profile: Option<String>,
    /// A KVM Manager agent JSON configuration to map onto the policy.
    #[arg(long = "kvmmanager-config")]
    pub kvmmanager_config: Option<PathBuf>,
    /// Also serve virtio-serial port org.kvmmanager.agent.0.
    #[arg(long = "kvmmanager-compat")]
    pub kvmmanager_compat: bool,
}

impl Args {
    /// True when `-b ?` or `-a ?` asked for the command list.
    pub fn wants_command_list(&self) -> bool {
        self.block_rpcs.as_deref() == Some("?") || self.allow_rpcs.as_deref() == Some("?")
    }

    /// Builds the effective configuration: defaults, then the file, then these arguments.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(file) = self.config_file() {
            FileConfig::load(&file)?.apply(&mut config)?;
        }
        self.apply(&mut config)?;
        config.add_compat_listener();
        Ok(config)
    }

    /// `-c PATH`, else porthole's file, else qemu-ga's, when present.
    fn config_file(&self) -> Option<PathBuf> {
        if let Some(path) = &self.config {
            return Some(path.clone());
        }
        [DEFAULT_CONFIG_PATH, QEMU_GA_CONFIG_PATH]
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
            .map(Path::to_path_buf)
    }

    fn apply(&self, config: &mut Config) -> Result<(), ConfigError> {
        if self.method.is_some() || self.path.is_some() {
            let method = match &self.method {
                Some(name) => Method::parse(name)?,
                None => config
                    .listeners
                    .first()
                    .map_or(Method::VirtioSerial, |l| l.method),
            };
            config.listeners = vec![Listener {
                method,
                path: self.path.clone(),
            }];
        }
        if let Some(v) = &self.logfile {
            config.logfile = Some(v.clone());
        }
        if let Some(v) = &self.pidfile {
            config.pidfile = Some(v.clone());
        }
        if let Some(v) = &self.fsfreeze_hook {
            config.fsfreeze_hook = Some(v.clone());
        }
        if let Some(v) = self.fsfreeze_auto_thaw {
            config.fsfreeze_auto_thaw = v;
        }
        if let Some(v) = &self.statedir {
            config.statedir = v.clone();
        }
        config.verbose |= self.verbose;
        config.daemonize |= self.daemonize;
        config.retry_path |= self.retry_path;
        if let Some(list) = &self.block_rpcs {
            config.block_rpcs = split_list(list);
        }
        if let Some(list) = &self.allow_rpcs {
            config.allow_rpcs = Some(split_list(list));
        }
        if let Some(name) = &self.profile {
            config.policy.profile = Profile::parse(name).ok_or_else(|| ConfigError::Invalid {
                key: "profile",
                value: name.clone(),
                why: "expected default or hardened",
            })?;
        }
        if let Some(path) = &self.kvmmanager_config {
            KvmManagerConfig::load(path)?.apply(config)?;
        }
        if self.kvmmanager_compat && config.kvmmanager_compat.is_none() {
            config.kvmmanager_compat = Some(KVMMANAGER_PORT.to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("porthole-agent").chain(args.iter().copied()))
    }

    #[test]
    fn qemu_ga_style_arguments() -> Result<(), Box<dyn std::error::Error>> {
        let args = parse(&[
            "-m",
            "unix-listen",
            "-p",
            "/tmp/s",
            "-t",
            "/tmp/st",
            "-b",
            "guest-exec,guest-file-open",
            "-F",
            "-v",
            "-c",
            "/nonexistent-porthole-test.toml",
        ])?;
        assert_eq!(
            args.fsfreeze_hook.as_deref(),
            Some(Path::new(DEFAULT_FSFREEZE_HOOK))
        );
        let mut config = Config::default();
        args.apply(&mut config)?;
        assert_eq!(config.listeners[0].method, Method::UnixListen);
        assert_eq!(config.block_rpcs, vec!["guest-exec", "guest-file-open"]);
        assert!(config.verbose);
        let again = parse(&["-t", "/a", "-t", "/b", "--fsfreeze-auto-thaw", "2"])?;
        assert_eq!(again.statedir.as_deref(), Some(Path::new("/b")));
        assert_eq!(again.fsfreeze_auto_thaw, Some(2));
        let hook = parse(&["--fsfreeze-hook=/etc/hook"])?;
        assert_eq!(hook.fsfreeze_hook.as_deref(), Some(Path::new("/etc/hook")));
        Ok(())
    }

    #[test]
    fn path_may_start_with_a_dash() -> Result<(), clap::Error> {
        let args = parse(&["-m", "vsock-listen", "-p", "-1:5555"])?;
        assert_eq!(args.path.as_deref(), Some("-1:5555"));
        Ok(())
    }

    #[test]
    fn bad_method_is_an_error() -> Result<(), clap::Error> {
        let args = parse(&["-m", "carrier-pigeon"])?;
        assert!(args.apply(&mut Config::default()).is_err());
        Ok(())
    }
}
