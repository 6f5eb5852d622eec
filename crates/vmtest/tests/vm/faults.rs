//! Bad input on the host side of a real VM: each must end in a clear error within its timeout,
//! never a hang. "Clear" means the text says what to check.

use super::{check, err, options, Outcome, Suite};
use porthole_client::commands::ExecArgs;
use porthole_client::{Client, ClientError, Endpoint, Options};
use std::time::{Duration, Instant};

/// Room for a loaded 2-core machine on top of a timeout.
const MARGIN: Duration = Duration::from_millis(1500);

fn quick(handshake: Duration) -> Options {
    Options {
        connect_timeout: Duration::from_secs(2),
        handshake_timeout: handshake,
        call_timeout: handshake,
        ..options()
    }
}

/// Runs `attempt`, which must fail within `limit`, with a text containing `says`.
fn fails_clearly<T: std::fmt::Debug>(
    what: &str,
    limit: Duration,
    says: &[&str],
    attempt: impl FnOnce() -> Result<T, ClientError>,
) -> Result<ClientError, String> {
    let start = Instant::now();
    let result = attempt();
    let took = start.elapsed();
    let error = match result {
        Ok(value) => return Err(format!("{what}: succeeded ({value:?})")),
        Err(e) => e,
    };
    let text = error.to_string();
    check(took < limit, || {
        format!("{what}: failed only after {took:?} (limit {limit:?}): {text}")
    })?;
    check(says.iter().any(|s| text.contains(s)), || {
        format!("{what}: the error does not say what to check: {text}")
    })?;
    eprintln!("vm-e2e:        {what}: {:.1}s: {text}", took.as_secs_f64());
    Ok(error)
}

pub fn wrong_socket_path(suite: &mut Suite) -> Outcome {
    let wrong = suite.vm.dir().join("porthole.sock.typo");
    let error = fails_clearly("wrong socket path", MARGIN, &["is the VM running"], || {
        Client::connect_unix(&wrong, quick(Duration::from_secs(2)))
    })?;
    check(matches!(error, ClientError::NoSuchSocket { .. }), || {
        format!("{error:?}")
    })
}

/// A virtio-serial port with nobody behind it in the guest: QEMU accepts the connection, the
/// bytes go nowhere, and only the handshake timeout can tell.
pub fn port_without_agent(suite: &mut Suite) -> Outcome {
    let timeout = Duration::from_secs(2);
    let socket = suite.vm.unused_port_socket();
    let error = fails_clearly(
        "virtio-serial port without an agent",
        timeout + MARGIN,
        &["is the agent running inside the guest?"],
        || Client::connect_unix(&socket, quick(timeout)),
    )?;
    check(
        matches!(error, ClientError::HandshakeTimeout { .. }),
        || format!("{error:?}"),
    )
}

/// What the guest prints on its console once its agent is stopped.
const STOPPED: &str = "vm-e2e: porthole-agent stopped";

/// The agent stopped (SIGSTOP) in the guest for a while: a connected client's call and a new
/// client's handshake both time out clearly; once it continues, both work again.
pub fn guest_never_answers(suite: &mut Suite) -> Outcome {
    let timeout = Duration::from_secs(2);
    let mut qga = Client::connect_unix(suite.vm.qga_socket(), options()).map_err(err)?;
    let stop = ExecArgs {
        path: "/bin/sh".into(),
        arg: Some(vec![
            "-c".into(),
            format!(
                "p=$(cat /run/porthole-agent.pid); sleep 0.5; kill -STOP $p; \
                 echo {STOPPED} > /dev/console; sleep 12; kill -CONT $p"
            ),
        ]),
        env: None,
        input_data: None,
        capture_output: None,
    };
    suite.client()?.exec(&stop).map_err(err)?;
    // The guest says on its serial console (a file on the host) when the agent is stopped.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !suite.vm.console().contains(STOPPED) {
        if Instant::now() > deadline {
            return Err("the guest did not stop its agent within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    qga.set_call_timeout(timeout);
    let stalled = fails_clearly(
        "call to a stopped agent",
        timeout + MARGIN,
        &["did not answer guest-ping within 2s"],
        || qga.ping(),
    )?;
    check(matches!(stalled, ClientError::Timeout { .. }), || {
        format!("{stalled:?}")
    })?;
    let socket = suite.vm.porthole_socket();
    let error = fails_clearly(
        "handshake with a stopped agent",
        timeout + MARGIN,
        &["is the agent running inside the guest?"],
        || Client::connect_unix(&socket, quick(timeout)),
    )?;
    check(
        matches!(error, ClientError::HandshakeTimeout { .. }),
        || format!("{error:?}"),
    )?;
    // After SIGCONT the same connection resynchronises past the late replies.
    let deadline = Instant::now() + Duration::from_secs(60);
    qga.set_call_timeout(Duration::from_secs(20));
    loop {
        match qga.ping() {
            Ok(()) => break,
            Err(e) if Instant::now() > deadline => return Err(format!("not back in 60 s: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
    suite.client()?.ping().map_err(err)
}

/// AF_VSOCK (the kernel's vhost-vsock) to a CID no VM has: the VM under test is reached
/// through vhost-user, so the kernel knows no guest at all. Without vsock support on the host
/// the error says how to get it.
pub fn vsock_cid_nobody_has(_suite: &mut Suite) -> Outcome {
    let timeout = Duration::from_secs(3);
    let endpoint = Endpoint::Vsock {
        cid: 4242,
        port: porthole_vmtest::AGENT_VSOCK_PORT,
    };
    let connect = Options {
        connect_timeout: timeout,
        ..options()
    };
    let error = fails_clearly(
        "AF_VSOCK to CID 4242",
        timeout + MARGIN,
        &["modprobe vhost_vsock", "vhost-vsock-pci"],
        || Client::connect(&endpoint, connect),
    )?;
    check(
        matches!(
            error,
            ClientError::VsockConnect { cid: 4242, .. }
                | ClientError::ConnectTimeout { .. }
                | ClientError::VsockUnavailable { .. }
        ),
        || format!("{error:?}"),
    )
}
