//! The porthole agent's wire protocols, with no I/O.
//!
//! Both ends of porthole use this crate: the agent to read requests and write replies, the host
//! client to write requests and read replies. Data flows through it in this order:
//!
//! 1. [`framer`] splits a byte stream into JSON texts (no message boundaries on virtio-serial),
//!    handling qemu's 0xFF resync, single quotes, garbage and size/depth limits.
//! 2. [`envelope`] decodes a text into a [`envelope::Request`] of either dialect (QGA or JSON-RPC 2.0)
//!    and encodes replies in the dialect the request used.
//! 3. [`schema`] validates the request's arguments against the command's [`commands::CommandSpec`]
//!    with qemu's exact error texts; then serde turns them into the typed structs of [`commands`].
//! 4. [`wire`] writes JSON in qemu-ga's byte layout.

pub mod commands;
pub mod envelope;
pub mod error;
pub mod framer;
pub mod fuzzing;
mod qemu_json;
pub mod schema;
pub mod wire;

pub use envelope::{
    decode, encode_reply, encode_reply_around, Decoded, Dialect, Rejection, Request,
};
pub use error::{CommandError, ErrorKind};
pub use framer::{Frame, FrameError, Framer, Limits};
