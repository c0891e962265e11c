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
pub use hinrec_data as data;
pub use hinrec_eval as eval;
pub use hinrec_graph as graph;
pub use hinrec_lgrec as lgrec;
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

/// Process-wide thread settings for the command-line tools; call first in
/// `main`, before any thread starts.
///
/// candle runs elementwise ops on its own spinning thread pool besides
/// rayon's. Our tensors are small (a batch is a few hundred rows), so that
/// pool only competes with rayon for the cores: one LGRec epoch on
/// lgrec-ml100k ran 10-15% faster without it (docs/lgrec.md). An explicit
/// `CANDLE_NUM_THREADS` is left alone.
pub fn configure_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}
