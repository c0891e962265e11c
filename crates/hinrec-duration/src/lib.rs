//! DURation (duration.txt): deep unified representations of heterogeneous
//! items. Two towers over each user's and item's sparse training history
//! ([`network::Duration`], section 3.2), a per-kind mapping `f_p` of each
//! item kind's raw attribute row into one unified space, and training on
//! eq. 8 ([`train`]): binary cross-entropy on observed labels, the RBF
//! distributional variance of the kinds' mapped rows (alignment, eq. 1-4)
//! and the distance between raw and mapped row covariances (topology,
//! eq. 5-6), both from hinrec-nn's [`hinrec_nn::alignment`].
//! [`per_kind::PerKind`] is the paper's homogeneous setting: one model per
//! item kind.
//!
//! ```
//! use hinrec_data::synthetic::{generate, SyntheticConfig};
//! use hinrec_data::SplitRule;
//! use hinrec_duration::{Duration, DurationConfig};
//! use hinrec_train::{FitContext, Silent, Validation, ValidationData};
//!
//! let ds = generate(&SyntheticConfig { n_users: 40, n_items: 30, ..Default::default() })?;
//! let split = SplitRule::LeaveOneOutRandom.apply(&ds.implicit(), 1)?;
//! let cfg = DurationConfig { dim: 8, batch: 64, epochs: 1, ..Default::default() };
//! let validation = Validation {
//!     data: ValidationData::Full { valid: &split.test, train: &split.train },
//!     metric: "NDCG@10".into(),
//! };
//! let mut progress = Silent;
//! let ctx = &mut FitContext::new(&split, validation, 1, &mut progress);
//! let (model, _) = Duration::fit(&cfg, ctx)?;
//! assert_eq!(model.kinds().len(), 1); // one item kind: no alignment term
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod data;
pub mod network;
pub mod paper;
pub mod params;
pub mod per_kind;
mod step;
pub mod train;

pub use network::Duration;
pub use params::{DurationConfig, DurationError, Variant};
pub use per_kind::{PerKind, PerKindConfig};
