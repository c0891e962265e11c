#![no_main]
//! A delimited data file under one of five manifests, loaded from disk.

use std::sync::OnceLock;

static WORK: OnceLock<tempfile::TempDir> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let work = WORK.get_or_init(|| tempfile::tempdir().expect("a temporary folder"));
    hinrec_fuzz::delimited(work.path(), data)
});
