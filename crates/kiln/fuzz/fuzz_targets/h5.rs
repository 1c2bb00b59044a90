#![no_main]
//! `kiln::io::fuzzing::h5`: any result but a panic, an abort or a hang.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = kiln::io::fuzzing::h5(data);
});
