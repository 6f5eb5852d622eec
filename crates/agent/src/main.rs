//! The porthole-agent binary: parse arguments, set up the process, serve every listener.

use anyhow::{bail, Context, Result};
use clap::Parser;
use porthole_agent::cli::Args;
use porthole_agent::commands::freeze::log::Gate;
use porthole_agent::config::{self, Config};
use porthole_agent::{commands, transport};
use std::fs::File;
use std::io::Write;
use std::sync::Arc;

fn main() {
    if let Err(e) = run() {
        eprintln!("porthole-agent: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    if args.version {
        println!(
            "porthole-agent {} (QEMU guest agent protocol)",
            env!("CARGO_PKG_VERSION")
        );
        return Ok(());
    }
    if args.wants_command_list() {
        for spec in commands::registry().specs() {
            println!("{}", spec.name);
        }
        return Ok(());
    }
    let config = args.resolve()?;
    if args.dump_conf {
        print!("{}", config::dump(&config));
        return Ok(());
    }
    // Before the log file is opened: a restarted agent may find its filesystems still frozen.
    porthole_agent::commands::freeze::hold_log_if_frozen(&config.statedir);
    init_logging(&config)?;
    if config.daemonize {
        // Before any thread exists: fork only copies the calling thread.
        nix::unistd::daemon(false, false).context("daemonize")?;
    }
    let _pidfile = config
        .pidfile
        .as_ref()
        .map(|p| lock_pidfile(p))
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(16)
        .build()
        .context("start runtime")?;
    runtime.block_on(serve(config))
}

/// Serves every configured listener until a signal arrives or one fails.
async fn serve(config: Config) -> Result<()> {
    let listeners = config.listeners.clone();
    let dispatcher = Arc::new(porthole_agent::build(config.clone())?);
    let config = Arc::new(config);
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        tasks.spawn(transport::serve(
            listener,
            config.clone(),
            dispatcher.clone(),
        ));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("terminated"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
        Some(done) = tasks.join_next() => match done {
            Ok(Err(e)) => bail!(e),
            Ok(Ok(())) => {}
            Err(e) => bail!("listener task: {e}"),
        },
    }
    Ok(())
}

fn init_logging(config: &Config) -> Result<()> {
    let level = if config.verbose {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false);
    match &config.logfile {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("open log file {}", path.display()))?;
            builder.with_writer(Gate::new(file)).init();
        }
        None => builder.with_writer(Gate::new(std::io::stderr())).init(),
    }
    Ok(())
}

/// Creates and locks the pid file; a second agent on the same file refuses to start.
fn lock_pidfile(path: &std::path::Path) -> Result<nix::fcntl::Flock<File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("open pid file {}", path.display()))?;
    let mut lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| {
            anyhow::anyhow!(
                "pid file {} is locked by another agent: {e}",
                path.display()
            )
        })?;
    lock.set_len(0)?;
    writeln!(lock, "{}", std::process::id())?;
    Ok(lock)
}
