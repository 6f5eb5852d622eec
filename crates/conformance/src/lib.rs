//! Conformance harness for porthole-agent: proves it is a drop-in replacement for Debian's qemu-ga 7.2.
//!
//! The suite is *differential*: every test starts both agents on fresh unix sockets and state
//! directories, feeds them the same raw bytes and compares the replies (error classes and texts,
//! reply shapes, deterministic values). The pieces:
//!
//! - [`locate`]: where the two binaries are (`/usr/sbin/qemu-ga`; porthole-agent from
//!   `PORTHOLE_AGENT_BIN` or built on demand with cargo).
//! - [`agent`]: spawn an agent with qemu-ga's command line, wait for its socket, kill it on drop.
//! - [`client`]: a raw-socket client that can send arbitrary bytes (split frames, 0xFF, garbage)
//!   and parse the reply stream (`{json}\n`, optionally preceded by 0xFF).
//! - [`shape`]: compare two JSON values by shape, with opt-in value equality per path.
//!
//! Self-test mode: set `PORTHOLE_AGENT_BIN=/usr/sbin/qemu-ga` and every differential test runs
//! qemu-ga against itself, which validates the expectations before porthole-agent exists.

pub mod agent;
pub mod client;
pub mod locate;
pub mod pair;
pub mod shape;

pub use agent::{Agent, AgentKind, AgentOpts, HarnessError};
pub use client::{ClientError, Conn, Reply};
pub use pair::{connect, exchange, Pair};
pub use shape::{compare_shape, ShapeOpts};

/// `(class, desc)` of an error reply, `None` for anything else.
pub fn error_of(reply: &serde_json::Value) -> Option<(String, String)> {
    let err = reply.get("error")?;
    let class = err.get("class")?.as_str()?.to_owned();
    let desc = err.get("desc")?.as_str()?.to_owned();
    Some((class, desc))
}

/// Replace every occurrence of `from` in string values (recursively) with `to`; used to erase
/// per-agent temp paths from replies before comparing them.
pub fn replace_in_strings(v: &mut serde_json::Value, from: &str, to: &str) {
    match v {
        serde_json::Value::String(s) if s.contains(from) => *s = s.replace(from, to),
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| replace_in_strings(x, from, to)),
        serde_json::Value::Object(m) => {
            m.values_mut().for_each(|x| replace_in_strings(x, from, to))
        }
        _ => {}
    }
}
