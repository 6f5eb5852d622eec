#![no_main]
// Seeded from fat images; the probe picks the reader, so mutations that break the magic are
// cheap rejections and the rest exercise the fat reader.
libfuzzer_sys::fuzz_target!(|data: &[u8]| porthole_fs::fuzzing::fuzz_filesystem(data));
