//! `porthole`: the command-line front end. Parsing lives in [`cli`], each command group in its
//! own module; this file only dispatches and turns errors into `porthole: ...` and exit status 1.

mod agent;
mod cli;
mod image;
mod inspect;
mod output;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Agent(args) => agent::run(args),
        cli::Command::Filesystems(args) => image::filesystems(args),
        cli::Command::Ls(args) => image::ls(args),
        cli::Command::Cat(args) => image::cat(args),
        cli::Command::Inspect(args) => inspect::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("porthole: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message already
/// carries (library errors often quote their source in their own message).
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}
