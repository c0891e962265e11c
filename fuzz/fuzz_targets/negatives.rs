#![no_main]
//! Stored negatives checked against a small dataset's test split.

use std::sync::OnceLock;

use hinrec_fuzz::NegativesTarget;

static TARGET: OnceLock<(tempfile::TempDir, NegativesTarget)> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (_, t) = TARGET.get_or_init(|| {
        let work = tempfile::tempdir().expect("a temporary folder");
        let t = NegativesTarget::new(work.path());
        (work, t)
    });
    t.run(data)
});
