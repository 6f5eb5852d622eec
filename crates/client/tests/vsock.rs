//! The vsock transports' error paths and the hybrid vsock preamble, on this host.
//!
//! AF_VSOCK to a guest needs `/dev/vhost-vsock`, which this host may lack: what is checked here is
//! that a CID nobody listens on fails clearly within the timeout. The hybrid vsock tests put a
//! stand-in VMM socket in front of a real agent (qemu-ga and porthole-agent): it refuses the
//! first connections the way Firecracker does while the guest is not listening (it closes them),
//! then acknowledges `CONNECT` and relays bytes. The real thing, vhost-device-vsock in front of a
//! VM, is exercised by crates/vmtest.

mod common;

use common::{agent_kinds, Agent};
use porthole_client::{Client, ClientError, Endpoint, Options};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn options(connect: Duration) -> Options {
    Options {
        connect_timeout: connect,
        ..Options::default()
    }
}

#[test]
fn vsock_to_a_cid_nobody_listens_on_fails_within_the_timeout() {
    let timeout = Duration::from_secs(1);
    // 3: the first guest CID (no VM here); 100: nobody at all; both must fail fast and clearly.
    for cid in [3, 100] {
        let endpoint = Endpoint::Vsock { cid, port: 1234 };
        let start = Instant::now();
        let result = Client::connect(&endpoint, options(timeout));
        let elapsed = start.elapsed();
        let error = match result {
            Err(e) => e,
            Ok(_) => panic!("a client connected to vsock {cid}:1234, where nothing listens"),
        };
        assert!(
            elapsed < timeout + Duration::from_millis(500),
            "CID {cid}: failed only after {elapsed:?}: {error}"
        );
        let text = error.to_string();
        assert!(
            matches!(
                error,
                ClientError::VsockConnect { .. }
                    | ClientError::ConnectTimeout { .. }
                    | ClientError::VsockUnavailable { .. }
            ),
            "CID {cid}: {error:?}"
        );
        assert!(text.contains("vsock"), "CID {cid}: {text}");
        if let ClientError::VsockConnect { cid: c, port, .. } = error {
            assert_eq!((c, port), (cid, 1234));
        }
    }
}

/// What the stand-in VMM does with each connection.
#[derive(Clone, Copy)]
enum Vmm {
    /// Closes the first `n` connections after reading `CONNECT`, then relays to the agent.
    RefuseThenRelay(usize),
    /// Answers this line instead of `OK`.
    Answer(&'static str),
    /// Closes the first `n` connections after reading `CONNECT`, then never answers (a guest
    /// too slow to answer the VMM).
    RefuseThenStall(usize),
}

/// A unix socket speaking the hybrid vsock preamble; returns its path and a connection count.
fn stand_in_vmm(dir: &Path, agent: Option<PathBuf>, vmm: Vmm) -> (PathBuf, Arc<AtomicUsize>) {
    let path = dir.join("vmm.vsock");
    let listener = UnixListener::bind(&path).expect("bind the stand-in VMM socket");
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            assert_eq!(line, "CONNECT 1234\n", "the client's preamble");
            let mut stream = stream;
            match (vmm, &agent) {
                (Vmm::RefuseThenRelay(refusals), _) if n < refusals => drop(stream),
                (Vmm::RefuseThenRelay(_), Some(agent)) => {
                    stream.write_all(b"OK 1073741824\n").expect("ack");
                    relay(
                        stream,
                        UnixStream::connect(agent).expect("connect to the agent"),
                    );
                }
                (Vmm::Answer(text), _) => {
                    let _ = stream.write_all(text.as_bytes());
                }
                (Vmm::RefuseThenStall(refusals), _) if n < refusals => drop(stream),
                (Vmm::RefuseThenStall(_), _) => {
                    // Held open, silent, until the client gives up.
                    thread::spawn(move || {
                        let mut sink = [0u8; 64];
                        while matches!(reader.get_mut().read(&mut sink), Ok(n) if n > 0) {}
                        drop(stream);
                    });
                }
                (Vmm::RefuseThenRelay(_), None) => drop(stream),
            }
        }
    });
    (path, count)
}

/// Copies bytes both ways until either side closes.
fn relay(client: UnixStream, agent: UnixStream) {
    let pairs = [
        (
            client.try_clone().expect("clone"),
            agent.try_clone().expect("clone"),
        ),
        (agent, client),
    ];
    for (mut from, mut to) in pairs {
        thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Both);
        });
    }
}

#[test]
fn hybrid_vsock_retries_until_the_guest_listens() {
    for kind in agent_kinds() {
        let agent = Agent::start(kind, &[]);
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, count) = stand_in_vmm(
            dir.path(),
            Some(agent.socket.clone()),
            Vmm::RefuseThenRelay(3),
        );
        let endpoint = Endpoint::HybridVsock { path, port: 1234 };
        let mut client = Client::connect(&endpoint, options(Duration::from_secs(5)))
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        client.ping().unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert!(client.host_name().is_ok(), "{kind:?}");
        assert_eq!(
            count.load(Ordering::SeqCst),
            4,
            "{kind:?}: three refusals, one success"
        );
        assert!(
            client.describe().starts_with("hybrid-vsock:"),
            "{}",
            client.describe()
        );
    }
}

#[test]
fn hybrid_vsock_names_a_guest_that_never_listens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, count) = stand_in_vmm(dir.path(), None, Vmm::RefuseThenRelay(usize::MAX));
    let endpoint = Endpoint::HybridVsock { path, port: 1234 };
    let start = Instant::now();
    let error = Client::connect(&endpoint, options(Duration::from_secs(1))).expect_err("refused");
    assert!(
        start.elapsed() < Duration::from_millis(3000),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(error, ClientError::GuestNotListening { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("nothing in the guest listens"),
        "{error}"
    );
    assert!(count.load(Ordering::SeqCst) > 1, "it retried");
}

/// The clock runs out while the VMM waits for the guest: after a refusal that is still "not
/// listening"; with no answer at all, the error says the guest did not answer.
#[test]
fn hybrid_vsock_timeout_mid_connect_names_the_cause() {
    for (refusals, expected) in [
        (2, "nothing in the guest listens"),
        (0, "no answer to CONNECT 1234 within 1.0s"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, _) = stand_in_vmm(dir.path(), None, Vmm::RefuseThenStall(refusals));
        let endpoint = Endpoint::HybridVsock { path, port: 1234 };
        let start = Instant::now();
        let error = Client::connect(&endpoint, options(Duration::from_secs(1))).expect_err("stall");
        let took = start.elapsed();
        assert!(took < Duration::from_millis(2500), "{took:?}");
        assert!(error.to_string().contains(expected), "{refusals}: {error}");
        let kind_ok = match refusals {
            0 => matches!(error, ClientError::HybridVsock { .. }),
            _ => matches!(error, ClientError::GuestNotListening { .. }),
        };
        assert!(kind_ok, "{error:?}");
    }
}

#[test]
fn hybrid_vsock_reports_what_the_vmm_said() {
    for answer in ["ERROR no such port\n", "OK\n", "hello\n"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, _) = stand_in_vmm(dir.path(), None, Vmm::Answer(answer));
        let endpoint = Endpoint::HybridVsock { path, port: 1234 };
        let error = Client::connect(&endpoint, options(Duration::from_secs(2))).expect_err(answer);
        let text = error.to_string();
        assert!(
            matches!(error, ClientError::HybridVsock { .. }),
            "{error:?}"
        );
        assert!(text.contains(answer.trim_end()), "{text}");
    }
}

#[test]
fn hybrid_vsock_without_a_socket_says_so() {
    let endpoint = Endpoint::HybridVsock {
        path: "/nonexistent/porthole/vmm.vsock".into(),
        port: 1234,
    };
    let error = Client::connect(&endpoint, options(Duration::from_secs(1))).expect_err("missing");
    assert!(
        matches!(error, ClientError::NoSuchSocket { .. }),
        "{error:?}"
    );
}
