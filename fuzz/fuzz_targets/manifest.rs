#![no_main]
//! hinrec's manifest loader on arbitrary bytes: errors are fine, panics are not.

libfuzzer_sys::fuzz_target!(|data: &[u8]| hinrec_fuzz::manifest(data));
