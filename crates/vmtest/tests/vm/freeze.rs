//! guest-fsfreeze-* on the VM's real ext4 data disk (virtio-blk, mounted on /data).
//!
//! While filesystems are frozen the agent runs only the freeze-safe commands, so everything the
//! guest must observe is set up before the freeze: a writer started with guest-exec waits for
//! the agent's frozen marker (in the state directory, on tmpfs), then writes to /data and
//! records on tmpfs, in the guest's monotonic clock (/proc/uptime), when it tried, when its
//! write returned and when the marker went away again (the thaw). Those times are read after
//! the thaw.

use super::{call, check, err, sh, Outcome, Suite};
use porthole_client::commands::{CaptureOutput, ExecArgs, ExecStatus};
use porthole_client::Client;
use porthole_vmtest::{disk, AUTO_THAW_SECS};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The agent's marker of the frozen state (`statedir` in rcS's agent.toml).
const MARKER: &str = "/run/porthole-agent/porthole-agent.frozen";
/// How long the suite keeps the filesystems frozen before thawing them itself.
const HELD: Duration = Duration::from_secs(4);

/// The writer: waits (bounded) for the marker, lets FIFREEZE finish, tries its write, and
/// records the times in /tmp (tmpfs, never frozen).
fn writer_script() -> String {
    format!(
        "m={MARKER}; i=0
while [ ! -e $m ] && [ $i -lt 600 ]; do usleep 50000; i=$((i+1)); done
[ -e $m ] || {{ echo 'the frozen marker never appeared' >&2; exit 2; }}
sleep 1
( while [ -e $m ]; do usleep 20000; done; cut -d' ' -f1 /proc/uptime > /tmp/fz-thawed ) &
cut -d' ' -f1 /proc/uptime > /tmp/fz-attempt
echo written-while-frozen > {}/frozen.txt
cut -d' ' -f1 /proc/uptime > /tmp/fz-done
wait",
        disk::MOUNTPOINT
    )
}

fn status(client: &mut Client) -> Result<String, String> {
    let value = client
        .call(
            "guest-fsfreeze-status",
            Value::Null,
            Duration::from_secs(30),
        )
        .map_err(err)?;
    value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("guest-fsfreeze-status returned {value}"))
}

fn freeze(client: &mut Client) -> Result<i64, String> {
    let frozen = client
        .call(
            "guest-fsfreeze-freeze",
            Value::Null,
            Duration::from_secs(60),
        )
        .map_err(err)?;
    frozen
        .as_i64()
        .ok_or_else(|| format!("guest-fsfreeze-freeze returned {frozen}"))
}

/// Freeze, a write that blocks until the thaw, status before, during and after.
pub fn write_blocks_until_thaw(suite: &mut Suite) -> Outcome {
    let mut client = suite.client()?;
    sh(&mut client, "rm -f /tmp/fz-* /data/frozen.txt")?;
    check(status(&mut client)? == "thawed", || {
        "not thawed at the start".into()
    })?;
    let writer = ExecArgs {
        path: "/bin/sh".into(),
        arg: Some(vec!["-c".into(), writer_script()]),
        env: None,
        input_data: None,
        capture_output: Some(CaptureOutput::Flag(true)),
    };
    let pid = client.exec(&writer).map_err(err)?;
    let count = freeze(&mut client)?;
    let frozen_at = Instant::now();
    let during = frozen_checks(&mut client, count);
    // Thaw whatever happened above, so a failure does not leave the disk frozen.
    std::thread::sleep(HELD.saturating_sub(frozen_at.elapsed()));
    let thawed = client
        .call("guest-fsfreeze-thaw", Value::Null, Duration::from_secs(60))
        .map_err(err)?;
    let held = frozen_at.elapsed();
    during?;
    check(thawed.as_i64() == Some(count), || {
        format!("thaw returned {thawed}, freeze froze {count}")
    })?;
    check(held < Duration::from_secs(AUTO_THAW_SECS), || {
        format!("frozen for {held:?}: the auto-thaw may have got there first")
    })?;
    check(status(&mut client)? == "thawed", || {
        "not thawed after the thaw".into()
    })?;
    let out = wait_exit(&mut client, pid)?;
    check(out.exitcode == Some(0), || {
        format!(
            "writer exited {:?} (stderr, base64: {:?})",
            out.exitcode, out.err_data
        )
    })?;
    let times = sh(
        &mut client,
        "cat /tmp/fz-attempt /tmp/fz-done /tmp/fz-thawed",
    )?;
    let times: Vec<f64> = times
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let [attempt, done, thaw] = times[..] else {
        return Err(format!("writer times {times:?}"));
    };
    let blocked = done - attempt;
    let earliest = HELD.as_secs_f64() - 1.0 - 1.5;
    check(blocked >= earliest, || {
        format!("the write returned {blocked:.2}s after it started: it did not wait for the thaw")
    })?;
    check((done - thaw).abs() < 1.0, || {
        format!("the write returned at {done:.2}, the thaw was seen at {thaw:.2}")
    })?;
    let written = sh(&mut client, &format!("cat {}/frozen.txt", disk::MOUNTPOINT))?;
    check(written == "written-while-frozen\n", || {
        format!("frozen.txt holds {written:?}")
    })?;
    eprintln!(
        "vm-e2e:        write blocked {blocked:.2}s, returned {:.2}s after the thaw",
        done - thaw
    );
    Ok(())
}

/// While frozen: status says so, and a command that is not freeze-safe is refused.
fn frozen_checks(client: &mut Client, count: i64) -> Outcome {
    check(count >= 1, || format!("froze {count} filesystems"))?;
    check(status(client)? == "frozen", || {
        "status is not frozen".into()
    })?;
    let refused = client.call("guest-get-fsinfo", Value::Null, Duration::from_secs(30));
    match refused {
        Err(e) if e.to_string().contains("frozen state") => Ok(()),
        other => Err(format!("guest-get-fsinfo while frozen: {other:?}")),
    }
}

/// Polls guest-exec-status until `pid` exited (at most a minute).
fn wait_exit(client: &mut Client, pid: i64) -> Result<ExecStatus, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = client.exec_status(pid).map_err(err)?;
        if status.exited {
            return Ok(status);
        }
        if Instant::now() > deadline {
            return Err(format!("writer {pid} still runs after 60 s"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A freeze nobody thaws ends by itself after `fsfreeze-auto-thaw`.
pub fn auto_thaw(suite: &mut Suite) -> Outcome {
    let mut client = suite.client()?;
    freeze(&mut client)?;
    let frozen_at = Instant::now();
    let limit = Duration::from_secs(AUTO_THAW_SECS + 20);
    let mut polls = 0;
    while status(&mut client)? == "frozen" {
        polls += 1;
        if frozen_at.elapsed() > limit {
            let _ = call(suite, "guest-fsfreeze-thaw", Value::Null);
            return Err(format!("still frozen {limit:?} after the freeze"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let after = frozen_at.elapsed();
    let soonest = Duration::from_secs(AUTO_THAW_SECS) - Duration::from_millis(500);
    check(after >= soonest && polls > 0, || {
        format!("thawed after {after:?} ({polls} polls), before the {AUTO_THAW_SECS}s auto-thaw")
    })?;
    let back = sh(
        &mut client,
        &format!(
            "echo ok > {0}/after-thaw.txt && cat {0}/after-thaw.txt",
            disk::MOUNTPOINT
        ),
    )?;
    check(back == "ok\n", || {
        format!("/data after the auto-thaw: {back:?}")
    })?;
    eprintln!("vm-e2e:        auto-thaw after {:.1}s", after.as_secs_f64());
    Ok(())
}
