#![no_main]
//! hinrec's npy loader on arbitrary bytes: errors are fine, panics are not.

libfuzzer_sys::fuzz_target!(|data: &[u8]| hinrec_fuzz::npy(data));
