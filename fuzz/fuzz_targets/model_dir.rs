#![no_main]
//! Edits to trained model directories (every registered model), then
//! load, evaluate, recommend and explain.

use std::sync::OnceLock;

use hinrec_fuzz::ModelDirTarget;

static TARGET: OnceLock<(tempfile::TempDir, ModelDirTarget)> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (_, t) = TARGET.get_or_init(|| {
        let work = tempfile::tempdir().expect("a temporary folder");
        let t = ModelDirTarget::new(work.path());
        (work, t)
    });
    t.run(data)
});
