#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    porthole_image::fuzzing::fuzz_vhdx(data);
});
