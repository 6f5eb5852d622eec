//! Entry points for fuzzing (cargo-fuzz targets in `crates/proto/fuzz` call these).
//!
//! They must never panic whatever the input; a unit test runs them over seeds and deterministic
//! mutations so CI exercises them on stable Rust without cargo-fuzz.

use crate::envelope::{decode, encode_reply, Decoded};
use crate::framer::{Frame, Framer, Limits};
use crate::schema::validate;
use crate::{commands, Dialect};

/// Feeds `data` to a framer in chunks whose sizes come from the data itself, decodes and validates
/// every message against every command schema, and encodes a reply for it.
pub fn framer_and_decoder(data: &[u8]) {
    let limits = Limits {
        max_message_bytes: 4096,
        max_depth: 64,
    };
    let mut framer = Framer::new(limits);
    let (chunk, rest) = match data.split_first() {
        Some((first, rest)) => (usize::from(*first % 16) + 1, rest),
        None => return,
    };
    for piece in rest.chunks(chunk) {
        for frame in framer.push(piece) {
            let Frame::Message(message) = frame else {
                continue;
            };
            assert!(message.len() <= limits.max_message_bytes + 1);
            handle(&message);
        }
    }
}

fn handle(message: &[u8]) {
    let requests = match decode(message, Dialect::Qga) {
        Decoded::Single(one) => vec![one],
        Decoded::Batch(many) => many,
    };
    let mut out = Vec::new();
    for request in requests {
        match request {
            Ok(request) => {
                for spec in ALL {
                    let _ = validate(&request.arguments, spec.params);
                }
                let id = request.id.as_ref();
                encode_reply(&mut out, request.dialect, id, &Ok(serde_json::Value::Null));
            }
            Err(rejection) => {
                encode_reply(
                    &mut out,
                    rejection.dialect,
                    rejection.id.as_ref(),
                    &Err(rejection.error),
                );
            }
        }
    }
}

const ALL: &[commands::CommandSpec] = &[
    commands::GUEST_SYNC,
    commands::GUEST_FILE_OPEN,
    commands::GUEST_FILE_READ,
    commands::GUEST_FILE_WRITE,
    commands::GUEST_FILE_SEEK,
    commands::GUEST_EXEC,
    commands::GUEST_SET_TIME,
    commands::GUEST_SHUTDOWN,
];

#[cfg(test)]
mod tests {
    use super::*;

    const SEEDS: &[&[u8]] = &[
        b"\x03{\"execute\":\"guest-sync\",\"arguments\":{\"id\":1},\"id\":\"x\"}",
        b"\x07{'execute':'guest-exec','arguments':{'path':'sh','arg':['-c','x'],'capture-output':'merged'}}",
        b"\x01[{\"jsonrpc\":\"2.0\",\"method\":\"guest-ping\",\"id\":1},{\"jsonrpc\":\"2.0\",\"method\":\"x\"}]",
        b"\x0f\xff{\"execute\":\"guest-file-seek\",\"arguments\":{\"handle\":1,\"offset\":-1,\"whence\":\"end\"}}}}garbage[[[[",
        b"\x02{\"execute\":\"guest-file-write\",\"arguments\":{\"handle\":1,\"buf-b64\":\"\\u00e9\\ud800\"}}",
    ];

    use porthole_mutate::Rng;

    #[test]
    fn survives_seeds_and_mutations() {
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        for seed in SEEDS {
            framer_and_decoder(seed);
            for _ in 0..2000 {
                let mut data = seed.to_vec();
                for _ in 0..1 + rng.next() % 4 {
                    let at = (rng.next() as usize) % data.len();
                    match rng.next() % 4 {
                        0 => data[at] ^= 1 << (rng.next() % 8),
                        1 => {
                            const TOKENS: &[u8] = b"{}[]\"'\\:,\xff";
                            data[at] = TOKENS[(rng.next() as usize) % TOKENS.len()];
                        }
                        2 => data.truncate(at.max(1)),
                        _ => data.insert(at, (rng.next() % 256) as u8),
                    }
                }
                framer_and_decoder(&data);
            }
        }
        // Deep nesting and a huge message stay bounded.
        let mut deep = vec![1u8];
        deep.extend(std::iter::repeat_n(b'[', 100_000));
        framer_and_decoder(&deep);
        let mut big = b"\x10{\"execute\":\"x\",\"arguments\":{\"a\":\"".to_vec();
        big.extend(std::iter::repeat_n(b'a', 1 << 20));
        framer_and_decoder(&big);
    }
}
