#![no_main]
// Seeded from ext4 images; the probe picks the reader, so mutations that break the magic are
// cheap rejections and the rest exercise the ext4 reader.
libfuzzer_sys::fuzz_target!(|data: &[u8]| porthole_fs::fuzzing::fuzz_filesystem(data));
