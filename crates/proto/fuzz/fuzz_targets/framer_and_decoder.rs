#![no_main]
//! The agent's first contact with untrusted bytes: framing, envelope decoding, validation.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| porthole_proto::fuzzing::framer_and_decoder(data));
