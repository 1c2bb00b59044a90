#![no_main]
//! `kiln::io::fuzzing::keras`: any result but a panic, an abort or a hang.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = kiln::io::fuzzing::keras(data);
});
