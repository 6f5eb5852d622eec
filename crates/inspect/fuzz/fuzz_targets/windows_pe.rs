#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    porthole_inspect::fuzzing::fuzz_windows_pe(data);
});
