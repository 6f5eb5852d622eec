//! Running virsh: a deadline on the process and fixed bounds on what it prints.

use std::io::{self, Read};
use std::process::{Child, ChildStderr, ChildStdout, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The most of virsh's standard error kept for the error message.
const MAX_STDERR_BYTES: usize = 64 << 10;
/// How often a running virsh is checked on.
const POLL: Duration = Duration::from_millis(5);
/// How long the output pipes may stay open after virsh exited (held by a child of its own).
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// What one pipe gave: at most its limit, and whether there was more.
#[derive(Debug, Default)]
pub(super) struct Captured {
    pub(super) bytes: Vec<u8>,
    pub(super) overflow: bool,
}

/// A finished virsh.
pub(super) struct Run {
    pub(super) status: ExitStatus,
    pub(super) stdout: Captured,
    pub(super) stderr: Captured,
}

pub(super) enum RunError {
    TimedOut,
    Io(io::Error),
}

/// Waits for `child` until `deadline` (killing it then), reading its output on two threads
/// through fixed bounds: past its limit a pipe is drained and discarded, so virsh never blocks
/// on a full pipe and we never hold more than the limit.
pub(super) fn run(
    mut child: Child,
    deadline: Instant,
    stdout_limit: usize,
) -> Result<Run, RunError> {
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        spawn_reader(Pipe::Out(out), stdout_limit, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        spawn_reader(Pipe::Err(err), MAX_STDERR_BYTES, tx);
    }
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::TimedOut);
            }
            Err(e) => return Err(RunError::Io(e)),
        }
    };
    let mut run = Run {
        status,
        stdout: Captured::default(),
        stderr: Captured::default(),
    };
    for _ in 0..2 {
        match rx.recv_timeout(PIPE_GRACE) {
            Ok((true, captured)) => run.stdout = captured.map_err(RunError::Io)?,
            Ok((false, captured)) => run.stderr = captured.map_err(RunError::Io)?,
            Err(_) => return Err(RunError::TimedOut),
        }
    }
    Ok(run)
}

enum Pipe {
    Out(ChildStdout),
    Err(ChildStderr),
}

/// Reads `pipe` to its end on a thread; sends (is-stdout, what it held).
fn spawn_reader(pipe: Pipe, limit: usize, tx: mpsc::Sender<(bool, io::Result<Captured>)>) {
    std::thread::spawn(move || {
        let (is_out, result) = match pipe {
            Pipe::Out(mut p) => (true, capture(&mut p, limit)),
            Pipe::Err(mut p) => (false, capture(&mut p, limit)),
        };
        let _ = tx.send((is_out, result));
    });
}

/// Up to `limit` bytes of `reader`, then drains the rest.
fn capture(reader: &mut dyn Read, limit: usize) -> io::Result<Captured> {
    let mut bytes = Vec::new();
    reader
        .take(u64::try_from(limit).unwrap_or(u64::MAX))
        .read_to_end(&mut bytes)?;
    let drained = io::copy(reader, &mut io::sink())?;
    Ok(Captured {
        bytes,
        overflow: drained > 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_read_through_a_bound() -> io::Result<()> {
        let data = vec![b'a'; 10_000];
        let got = capture(&mut &data[..], 100)?;
        assert_eq!(got.bytes.len(), 100);
        assert!(got.overflow);
        let got = capture(&mut &data[..], 10_000)?;
        assert!(!got.overflow);
        Ok(())
    }

    fn spawn(script: &str) -> Child {
        std::process::Command::new("sh")
            .args(["-c", script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sh")
    }

    #[test]
    fn a_hung_process_is_killed_at_the_deadline() {
        let start = Instant::now();
        let result = run(spawn("sleep 30"), start + Duration::from_millis(300), 100);
        assert!(matches!(result, Err(RunError::TimedOut)));
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_flood_is_cut_at_the_limit_and_the_process_still_finishes() {
        let deadline = Instant::now() + Duration::from_secs(30);
        let script = "head -c 5000000 /dev/zero; echo oops >&2; exit 3";
        let Ok(done) = run(spawn(script), deadline, 1000) else {
            panic!("run failed");
        };
        assert_eq!(done.stdout.bytes.len(), 1000);
        assert!(done.stdout.overflow);
        assert_eq!(done.stderr.bytes, b"oops\n");
        assert_eq!(done.status.code(), Some(3));
    }
}
