#![no_main]
// Seeded from ntfs images; the probe picks the reader, so mutations that break the magic are
// cheap rejections and the rest exercise the ntfs reader.
libfuzzer_sys::fuzz_target!(|data: &[u8]| porthole_fs::fuzzing::fuzz_filesystem(data));
