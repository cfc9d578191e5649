#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pio_fuzz::run(&pio_fuzz::chat::CONFIG, data));
