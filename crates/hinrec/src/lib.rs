//! hinrec: recommenders over heterogeneous information networks.
//!
//! This crate is the facade over the workspace (re-exporting
//! [`data`], [`eval`], [`graph`], [`sample`], [`train`], [`baselines`],
//! [`lgrec`] and [`reda`]) and the engine behind the `hinrec` command line:
//! [`registry`] lists every model, [`experiment`] prepares a dataset for a
//! protocol (split, validation, stored negatives), [`models`] trains any
//! registered model, and [`model_dir`] saves a trained model with its
//! parameters and split.
//!
//! ```
//! use hinrec::experiment::{ExperimentConfig, Prepared};
//! use hinrec::models::{fit_quiet, params};
//!
//! let ds = hinrec::data::registry::load("synthetic", None)?;
//! let cfg = ExperimentConfig::default();
//! let prepared = Prepared::new(&ds, &cfg)?;
//! let entry = hinrec::registry::model("mostpop").map_err(anyhow::Error::msg)?;
//! let p = params(entry, &cfg, &Default::default())?;
//! let trained = fit_quiet(p.as_ref(), &prepared, None, &cfg, 0)?;
//! let report = prepared.evaluate_sampled(trained.model.as_ref(), "mostpop", 0, &[10])?;
//! assert!(report.metrics.get("HR@10").unwrap() > 0.0);
//! # Ok::<(), anyhow::Error>(())
//! ```

pub use hinrec_baselines as baselines;
pub use hinrec_cluster as cluster;
pub use hinrec_data as data;
pub use hinrec_duration as duration;
pub use hinrec_eval as eval;
pub use hinrec_glrs as glrs;
pub use hinrec_graph as graph;
pub use hinrec_hhfan as hhfan;
pub use hinrec_lgrec as lgrec;
pub use hinrec_neural_baselines as neural_baselines;
pub use hinrec_reda as reda;
pub use hinrec_sample as sample;
pub use hinrec_train as train;

pub mod experiment;
pub mod model_dir;
pub mod models;
pub mod paths;
pub mod recommend;
pub mod registry;
pub mod results;
pub mod tune;

/// Asks mimalloc (the binaries' allocator) never to hand freed pages back
/// to the kernel. By default it does so a second after a free, and the
/// next batch faults them in again, zeroed: HHFAN's epoch on ml1m took
/// 280,000 page faults instead of 900 and trained 15 % slower
/// (docs/performance.md, "The allocator"); peak memory is the same.
///
/// mimalloc reads the option from the environment before `main`, and
/// setting it afterwards takes FFI that the workspace's `forbid(unsafe)`
/// rules out; so, unless `MIMALLOC_PURGE_DELAY` is set already, the
/// process replaces itself with the same command and the option set. Call
/// it first in `main`, before anything sets other variables. Where that
/// fails (or off Unix) it returns and the process carries on as it is.
pub fn keep_freed_memory() {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        if let Ok(exe) = std::env::current_exe() {
            // `exec` returns only when it failed.
            let _ = std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env("MIMALLOC_PURGE_DELAY", "-1")
                .exec();
        }
    }
}

/// Process-wide thread settings for the command-line tools; call first in
/// `main`, before any thread starts. `threads` is rayon's pool size
/// (default: `RAYON_NUM_THREADS`, else every core).
///
/// candle runs elementwise ops on its own spinning thread pool besides
/// rayon's. Our tensors are small (a batch is a few hundred rows), so that
/// pool only competes with rayon for the cores: one LGRec epoch on
/// lgrec-ml100k ran 10-15% faster without it (docs/lgrec.md). An explicit
/// `CANDLE_NUM_THREADS` is left alone.
///
/// candle 0.11 splits each matrix product over `RAYON_NUM_THREADS` threads
/// (it ignores `CANDLE_NUM_THREADS` there); on our products of a few
/// hundred rows the split costs more than it saves (GLRS's towers trained
/// 2.3x faster unsplit, docs/performance.md). So candle's products run on
/// the calling thread and our own rayon pool keeps its threads.
pub fn configure_threads(threads: Option<usize>) {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let n = threads
        .or_else(|| {
            std::env::var("RAYON_NUM_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
        })
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    std::env::set_var("RAYON_NUM_THREADS", "1");
    // Fails only when a pool exists already (a second call): keep it.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
}
