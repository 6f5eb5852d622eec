//! Running programs in the guest beyond "output and status": standard input (guest-exec's
//! `input-data`, porthole's `input-data` and -exec-stdin after the start), output streamed while
//! the process runs, the timeout that kills the process group, and a non-root user.

use super::{check, err, sh, Outcome, Suite};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use porthole_client::commands::{CaptureOutput, ExecArgs, PxExecArgs, PxExecOutput};
use porthole_client::Client;
use porthole_vmtest::GUEST_USER;
use std::time::{Duration, Instant};

/// Everything a streamed process printed until it exited, and the last chunk.
struct Collected {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    last: PxExecOutput,
}

/// Polls guest-porthole-exec-output until the last chunk (at most `limit`).
fn collect(client: &mut Client, handle: i64, limit: Duration) -> Result<Collected, String> {
    let deadline = Instant::now() + limit;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    loop {
        let chunk = client.px_exec_output(handle, None).map_err(err)?;
        stdout.extend(BASE64.decode(&chunk.stdout_b64).map_err(err)?);
        stderr.extend(BASE64.decode(&chunk.stderr_b64).map_err(err)?);
        if chunk.exited {
            return Ok(Collected {
                stdout,
                stderr,
                last: chunk,
            });
        }
        if Instant::now() > deadline {
            let _ = client.px_exec_kill(handle, Some(9));
            return Err(format!("handle {handle} still runs after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn px(path: &str, args: &[&str]) -> PxExecArgs {
    PxExecArgs {
        path: path.into(),
        arg: Some(args.iter().map(|a| a.to_string()).collect()),
        ..PxExecArgs::default()
    }
}

/// guest-exec's `input-data` and guest-porthole-exec's, read to the end by the child.
pub fn stdin_at_start(suite: &mut Suite) -> Outcome {
    let mut client = suite.client()?;
    let input = b"line one\nline two\n\x00binary\xff\n";
    let request = ExecArgs {
        path: "/bin/sh".into(),
        arg: Some(vec!["-c".into(), "wc -c; echo done".into()]),
        env: None,
        input_data: Some(BASE64.encode(input)),
        capture_output: Some(CaptureOutput::Flag(true)),
    };
    let out = client
        .exec_wait(
            &request,
            Duration::from_millis(50),
            Some(Duration::from_secs(60)),
        )
        .map_err(err)?;
    let wanted = format!("{}\ndone\n", input.len());
    let got = String::from_utf8_lossy(&out.stdout);
    check(got.split_whitespace().eq(wanted.split_whitespace()), || {
        format!("guest-exec with input-data: stdout {got:?}, wanted {wanted:?}")
    })?;
    let handle = client
        .px_exec(&PxExecArgs {
            input_data: Some(BASE64.encode(input)),
            ..px("/bin/cat", &[])
        })
        .map_err(err)?;
    let done = collect(&mut client, handle, Duration::from_secs(60))?;
    check(done.stdout == input, || {
        format!(
            "guest-porthole-exec with input-data echoed {:?}",
            done.stdout
        )
    })?;
    check(done.last.exitcode == Some(0), || {
        format!("cat: {:?}", done.last)
    })
}

/// A streamed process: output arrives while it runs, stdin is written after the start and
/// closed with `eof`.
pub fn stdin_after_start_and_streaming(suite: &mut Suite) -> Outcome {
    let mut client = suite.client()?;
    // Prints a line, then echoes each input line upper-cased until end of input.
    let script = "echo started; while read -r l; do echo \"got $l\"; done; echo eof >&2";
    let handle = client
        .px_exec(&PxExecArgs {
            stream: Some(true),
            ..px("/bin/sh", &["-c", script])
        })
        .map_err(err)?;
    // "started" shows while the process still waits for input.
    let seen = wait_for_output(&mut client, handle, b"started\n")?;
    client
        .px_exec_stdin(handle, b"alpha\n", false)
        .map_err(err)?;
    let seen = [seen, wait_for_output(&mut client, handle, b"got alpha\n")?].concat();
    client.px_exec_stdin(handle, b"beta\n", true).map_err(err)?;
    let done = collect(&mut client, handle, Duration::from_secs(60))?;
    let all = [seen, done.stdout].concat();
    check(all == b"started\ngot alpha\ngot beta\n", || {
        format!("stdout {:?}", String::from_utf8_lossy(&all))
    })?;
    check(done.stderr == b"eof\n", || {
        format!("stderr {:?}", done.stderr)
    })?;
    check(done.last.exitcode == Some(0), || {
        format!("last chunk {:?}", done.last)
    })
}

/// Polls a running streamed process until its stdout so far ends with `wanted`; fails if the
/// process exits first (the point is to see output before the exit).
fn wait_for_output(client: &mut Client, handle: i64, wanted: &[u8]) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stdout = Vec::new();
    loop {
        let chunk = client.px_exec_output(handle, None).map_err(err)?;
        stdout.extend(BASE64.decode(&chunk.stdout_b64).map_err(err)?);
        if chunk.exited {
            return Err(format!(
                "exited ({chunk:?}) before {:?} was seen; stdout {:?}",
                String::from_utf8_lossy(wanted),
                String::from_utf8_lossy(&stdout)
            ));
        }
        if stdout.ends_with(wanted) {
            return Ok(stdout);
        }
        if Instant::now() > deadline {
            let _ = client.px_exec_kill(handle, Some(9));
            return Err(format!(
                "no {:?} within 30 s",
                String::from_utf8_lossy(wanted)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Output of a process that prints, sleeps and prints again is seen before it exits.
pub fn streaming_before_exit(suite: &mut Suite) -> Outcome {
    let mut client = suite.client()?;
    let handle = client
        .px_exec(&PxExecArgs {
            stream: Some(true),
            ..px("/bin/sh", &["-c", "echo first; sleep 3; echo second"])
        })
        .map_err(err)?;
    // Fails if the process exits before "first" is handed out, as it would without streaming.
    let early = wait_for_output(&mut client, handle, b"first\n")?;
    let done = collect(&mut client, handle, Duration::from_secs(60))?;
    check(early == b"first\n" && done.stdout == b"second\n", || {
        format!("before exit {early:?}, at exit {:?}", done.stdout)
    })?;
    check(done.last.exitcode == Some(0), || {
        format!("last chunk {:?}", done.last)
    })
}

/// `timeout-ms` kills the whole process group (a background grandchild too) and says so.
pub fn timeout_kills_the_group(suite: &mut Suite) -> Outcome {
    let mut client = suite.client()?;
    sh(&mut client, "rm -f /tmp/grandchild.pid")?;
    let script = "sleep 300 & echo $! > /tmp/grandchild.pid; echo waiting; sleep 300";
    let handle = client
        .px_exec(&PxExecArgs {
            timeout_ms: Some(1500),
            ..px("/bin/sh", &["-c", script])
        })
        .map_err(err)?;
    let started = Instant::now();
    let done = collect(&mut client, handle, Duration::from_secs(60))?;
    let took = started.elapsed();
    check(done.last.timed_out == Some(true), || {
        format!("last chunk {:?}", done.last)
    })?;
    check(done.last.signal == Some(9), || {
        format!("signal {:?}", done.last.signal)
    })?;
    check(done.stdout == b"waiting\n", || {
        format!("stdout {:?}", done.stdout)
    })?;
    check(took < Duration::from_secs(20), || {
        format!("reported after {took:?}")
    })?;
    // The grandchild was in the group: gone (kill -0 fails), not reparented and running.
    let probe = "p=$(cat /tmp/grandchild.pid); i=0
while kill -0 $p 2>/dev/null && [ $i -lt 50 ]; do usleep 100000; i=$((i+1)); done
kill -0 $p 2>/dev/null && echo alive || echo gone";
    let fate = sh(&mut client, probe)?;
    check(fate == "gone\n", || {
        "the background sleep outlived the timeout".into()
    })
}

/// `user` runs the child as the guest's unprivileged account.
pub fn as_non_root_user(suite: &mut Suite) -> Outcome {
    let (name, uid, gid) = GUEST_USER;
    let mut client = suite.client()?;
    let handle = client
        .px_exec(&PxExecArgs {
            user: Some(name.into()),
            ..px("/bin/sh", &["-c", "id -u; id -g; id -un"])
        })
        .map_err(err)?;
    let done = collect(&mut client, handle, Duration::from_secs(60))?;
    let got = String::from_utf8_lossy(&done.stdout);
    check(got == format!("{uid}\n{gid}\n{name}\n"), || {
        format!(
            "id says {got:?} (stderr {:?})",
            String::from_utf8_lossy(&done.stderr)
        )
    })?;
    // And the user's rights are what the kernel enforces: root's directory is closed to it.
    let handle = client
        .px_exec(&PxExecArgs {
            user: Some(name.into()),
            ..px("/bin/sh", &["-c", "touch /root/x"])
        })
        .map_err(err)?;
    let denied = collect(&mut client, handle, Duration::from_secs(60))?;
    check(denied.last.exitcode != Some(0), || {
        "an unprivileged user could write to /root".into()
    })
}
