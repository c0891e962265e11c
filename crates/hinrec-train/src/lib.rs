//! The model contract of hinrec and the training bookkeeping every model
//! shares.
//!
//! - [`ModelParams`]: a model's parameters. `Default` holds its defaults,
//!   [`ModelParams::check`] runs before any work, [`ModelParams::fit`]
//!   trains on a [`FitContext`] (the split, the validation, the typed HIN
//!   when asked for, the seed, the checkpoint policy and the progress).
//! - [`TrainedModel`]: batched scoring ([`hinrec_eval::Scorer`]), a
//!   self-contained save (loaded back by [`ModelParams::load`]) and
//!   explanations.
//! - [`AnyParams`]: the same behind a pointer, with TOML in and out, for the
//!   registry of the `hinrec` crate.
//! - [`bookkeeping`]: validation, early stopping, per-epoch reports and the
//!   fit summary, for plain-Rust loops (BPR-MF) and the candle trainer of
//!   `hinrec-nn` alike.
//!
//! ```
//! use hinrec_train::bookkeeping::EpochTracker;
//!
//! // Patience 1: the second epoch without improvement stops the loop.
//! let mut t = EpochTracker::new(1, 100);
//! let (_, keep) = t.record(1, 0.7, 0.5, Some(0.20));
//! assert!(keep);
//! let (report, keep) = t.record(2, 0.6, 0.5, Some(0.10));
//! assert!(!keep && t.should_stop());
//! assert_eq!(report.best, Some(0.20));
//! assert_eq!(t.summary().best_epoch, 1);
//! ```

pub mod bookkeeping;
pub mod contract;

pub use bookkeeping::{
    metric_cutoff, EarlyStopping, EpochReport, EpochTracker, FitSummary, Judge, Validation,
    ValidationData,
};
pub use contract::{
    AnyParams, Callbacks, CheckpointPolicy, FitContext, Fitted, ModelError, ModelParams, Progress,
    Reason, Silent, TrainedModel,
};
