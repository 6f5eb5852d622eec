//! The client against peers that misbehave: silent, trickling, garbage, huge replies, closed
//! connections, missing sockets. Each peer is a plain UnixListener thread in the test.

use porthole_client::{Client, ClientError, Options};
use porthole_proto::framer::{Frame, Framer};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the fake agent does after answering the handshake.
#[derive(Clone)]
enum Behaviour {
    /// Accepts and never answers anything, not even the handshake.
    Mute,
    /// Answers the handshake, then reads and never answers.
    Silent,
    /// Answers the handshake, then sends these bytes to every request.
    Reply(Vec<u8>),
    /// Answers the handshake, then streams `{"return": "aaaa...` without end.
    Endless,
    /// Answers the handshake, then sends one byte every 100 ms, never completing a reply.
    Trickle,
    /// Answers the handshake, then closes the connection on the next request.
    Close,
    /// Answers the handshake, then writes half a reply line and stalls (the connection stays
    /// open until the client goes).
    HalfThenStall,
    /// Answers the handshake, then writes half a reply line and closes the connection.
    HalfThenClose,
}

/// The first half of `{"return": {}}`, as an agent that died or hung mid-write leaves it.
const HALF_REPLY: &[u8] = b"{\"return\": {\"ver";

struct Peer {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl Peer {
    fn start(behaviour: Behaviour) -> Peer {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("peer.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        let thread = std::thread::spawn(move || {
            if let Ok((stream, _)) = listener.accept() {
                serve(stream, &behaviour);
            }
        });
        Peer {
            _dir: dir,
            socket,
            thread: Some(thread),
        }
    }

    fn options(handshake_ms: u64) -> Options {
        Options {
            handshake_timeout: Duration::from_millis(handshake_ms),
            ..Options::default()
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // The peer threads end when the client's side of the socket closes (read returns 0 or
        // a write fails), which happens before the Peer is dropped in every test.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads requests; answers guest-sync-delimited like qemu-ga, everything else per `behaviour`.
fn serve(mut stream: UnixStream, behaviour: &Behaviour) {
    let mut framer = Framer::default();
    let mut buf = [0u8; 4096];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for frame in framer.push(&buf[..n]) {
            let Frame::Message(message) = frame else {
                continue;
            };
            let request: Value = serde_json::from_slice(&message).unwrap_or_default();
            if matches!(behaviour, Behaviour::Mute) {
                continue;
            }
            let reply = if request["execute"] == "guest-sync-delimited" {
                let id = &request["arguments"]["id"];
                // Stale junk before the delimiter, as a vanished client leaves it.
                let mut reply = b"{\"return\": 1}\n\x00garbage\x01\n\xff".to_vec();
                reply.extend(format!("{{\"return\": 99}}\n{{\"return\": {id}}}\n").bytes());
                reply
            } else {
                match behaviour {
                    Behaviour::Mute | Behaviour::Silent => continue,
                    Behaviour::Reply(bytes) => bytes.clone(),
                    Behaviour::Close => return,
                    Behaviour::Endless => return endless(&mut stream),
                    Behaviour::Trickle => return trickle(&mut stream),
                    Behaviour::HalfThenStall => return half_then_stall(&mut stream),
                    Behaviour::HalfThenClose => {
                        let _ = stream.write_all(HALF_REPLY);
                        return;
                    }
                }
            };
            if stream.write_all(&reply).is_err() {
                return;
            }
        }
    }
}

fn endless(stream: &mut UnixStream) {
    let _ = stream.write_all(b"{\"return\": \"");
    let chunk = [b'a'; 65536];
    while stream.write_all(&chunk).is_ok() {}
}

fn trickle(stream: &mut UnixStream) {
    let _ = stream.write_all(b"{\"return\": \"");
    while stream.write_all(b"a").is_ok() {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Half a reply, then nothing: reads until the client closes its end.
fn half_then_stall(stream: &mut UnixStream) {
    if stream.write_all(HALF_REPLY).is_ok() {
        let mut sink = [0u8; 4096];
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    }
}

#[test]
fn half_written_reply_then_silence_times_out() {
    let peer = Peer::start(Behaviour::HalfThenStall);
    let mut client = Client::connect_unix(&peer.socket, Peer::options(2000)).expect("handshake");
    let timeout = Duration::from_millis(500);
    let started = Instant::now();
    let err = client
        .call("guest-info", Value::Null, timeout)
        .expect_err("half a reply");
    let took = started.elapsed();
    assert!(
        matches!(&err, ClientError::UnfinishedReply { command, .. } if command == "guest-info"),
        "{err:?}"
    );
    assert!(err.is_timeout());
    assert!(took >= timeout && took < timeout * 4, "{took:?}");
    assert_eq!(
        err.to_string(),
        "the agent began its reply to guest-info but did not finish it within 0.5s: the agent \
         stopped mid-write or the reply needs a longer timeout"
    );
    drop(client);
}

#[test]
fn half_written_reply_then_close_is_reported() {
    let peer = Peer::start(Behaviour::HalfThenClose);
    let mut client = Client::connect_unix(&peer.socket, Peer::options(2000)).expect("handshake");
    let started = Instant::now();
    let err = client
        .call("guest-info", Value::Null, Duration::from_secs(10))
        .expect_err("half a reply");
    // The close ends the wait at once, not at the timeout.
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        err.to_string(),
        "the agent closed the connection while we waited for the reply to guest-info"
    );
    // The next call fails as clearly (the handshake finds the connection gone).
    let again = client.ping().expect_err("closed");
    assert!(
        matches!(again, ClientError::Closed { .. } | ClientError::Io { .. }),
        "{again:?}"
    );
}

#[test]
fn missing_socket_says_what_to_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nope.sock");
    let err = Client::connect_unix(&path, Options::default()).expect_err("missing socket");
    assert!(matches!(err, ClientError::NoSuchSocket { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "no such socket {}: is the VM running and does it have a channel for the agent?",
            path.display()
        )
    );
}

#[test]
fn stale_socket_file_says_nothing_listens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stale.sock");
    drop(UnixListener::bind(&path).expect("bind"));
    let err = Client::connect_unix(&path, Options::default()).expect_err("refused");
    assert_eq!(
        err.to_string(),
        format!("nothing is listening on {}", path.display())
    );
}

#[test]
fn mute_peer_ends_in_handshake_timeout() {
    let peer = Peer::start(Behaviour::Mute);
    let started = Instant::now();
    let err = Client::connect_unix(&peer.socket, Peer::options(400)).expect_err("mute");
    let took = started.elapsed();
    assert!(
        matches!(err, ClientError::HandshakeTimeout { .. }),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(
        err.to_string(),
        "the agent did not answer guest-sync-delimited within 0.4s: is the agent running inside \
         the guest? (virtio-serial gives no connection signal, so a missing agent looks like \
         silence)"
    );
}

/// The fake's handshake reply comes after stale replies and garbage on both sides of its 0xFF.
#[test]
fn handshake_skips_junk_then_silence_times_out() {
    let peer = Peer::start(Behaviour::Silent);
    let mut client = Client::connect_unix(&peer.socket, Peer::options(2000)).expect("handshake");
    let started = Instant::now();
    let err = client
        .call("guest-ping", Value::Null, Duration::from_millis(300))
        .expect_err("silent");
    assert!(
        matches!(&err, ClientError::Timeout { command, .. } if command == "guest-ping"),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        err.to_string(),
        "the agent did not answer guest-ping within 0.3s"
    );
}

#[test]
fn trickling_reply_is_bounded_by_the_deadline() {
    let peer = Peer::start(Behaviour::Trickle);
    let mut client = Client::connect_unix(&peer.socket, Peer::options(2000)).expect("handshake");
    let started = Instant::now();
    let err = client
        .call("guest-ping", Value::Null, Duration::from_millis(500))
        .expect_err("trickle");
    let took = started.elapsed();
    // The reply started, so the error says it was left unfinished rather than unanswered.
    assert!(
        matches!(err, ClientError::UnfinishedReply { .. }),
        "{err:?}"
    );
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

fn protocol_detail(reply: &[u8]) -> String {
    let peer = Peer::start(Behaviour::Reply(reply.to_vec()));
    let mut client = Client::connect_unix(&peer.socket, Peer::options(2000)).expect("handshake");
    match client.call("guest-ping", Value::Null, Duration::from_secs(2)) {
        Err(ClientError::Protocol { command, detail }) => {
            assert_eq!(command, "guest-ping");
            detail
        }
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(reply)),
    }
}

#[test]
fn garbage_replies_are_protocol_errors() {
    assert!(protocol_detail(b"hello world\n").contains("not valid JSON"));
    assert!(protocol_detail(b"}}}\n").contains("stray '}'"));
    assert!(protocol_detail(b"[1, 2]\n").contains("expected a JSON object, got an array"));
    assert!(protocol_detail(b"{\"result\": 1}\n").contains("neither 'return' nor 'error'"));
    assert!(protocol_detail(b"{\"error\": \"x\"}\n").contains("'error' must be an object"));
}

#[test]
fn typed_call_with_wrong_shape_is_a_protocol_error() {
    let peer = Peer::start(Behaviour::Reply(b"{\"return\": {\"host\": 1}}\n".to_vec()));
    let mut client = Client::connect_unix(&peer.socket, Peer::options(2000)).expect("handshake");
    let err = client.host_name().expect_err("wrong shape");
    assert!(
        err.to_string()
            .starts_with("protocol error in the reply to guest-get-host-name: unexpected return"),
        "{err}"
    );
}

#[test]
fn huge_reply_is_refused_without_buffering_it() {
    let peer = Peer::start(Behaviour::Endless);
    let options = Options {
        max_reply_bytes: 1 << 20,
        ..Peer::options(2000)
    };
    let mut client = Client::connect_unix(&peer.socket, options).expect("handshake");
    let started = Instant::now();
    let err = client
        .call("guest-ping", Value::Null, Duration::from_secs(10))
        .expect_err("endless");
    assert!(
        matches!(err, ClientError::ReplyTooLarge { limit, .. } if limit == 1 << 20),
        "{err:?}"
    );
    // Refused as soon as the limit is crossed, not at the timeout.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        err.to_string(),
        "reply to guest-ping exceeds the limit of 1048576 bytes"
    );
}

#[test]
fn no_reply_command_succeeds_on_silence_or_close() {
    let peer = Peer::start(Behaviour::Silent);
    let mut client = Client::connect_unix(&peer.socket, Peer::options(2000)).expect("handshake");
    client
        .shutdown(None, Duration::from_millis(300))
        .expect("silence is success");

    let peer = Peer::start(Behaviour::Close);
    let mut client = Client::connect_unix(&peer.socket, Peer::options(2000)).expect("handshake");
    client
        .shutdown(Some("reboot"), Duration::from_secs(5))
        .expect("close is success");
    // The connection is gone: the next call fails with a clear error, it does not hang.
    let err = client.ping().expect_err("closed");
    assert!(
        matches!(err, ClientError::Closed { .. } | ClientError::Io { .. }),
        "{err:?}"
    );
}

#[test]
fn closed_connection_mid_call_is_reported() {
    let peer = Peer::start(Behaviour::Close);
    let mut client = Client::connect_unix(&peer.socket, Peer::options(2000)).expect("handshake");
    let err = client.ping().expect_err("closed");
    assert_eq!(
        err.to_string(),
        "the agent closed the connection while we waited for the reply to guest-ping"
    );
}
