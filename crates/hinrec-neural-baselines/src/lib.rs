//! The neural baselines every paper's tables compare against: NeuMF
//! ([`neumf`], He et al. 2017: GMF and MLP towers under one output layer,
//! pointwise cross-entropy; [`Towers::Gmf`] keeps the GMF tower alone) and
//! LightGCN ([`lightgcn`], He et al. 2020: layer means of embeddings
//! propagated over the normalised user-item graph, BPR). Each trains
//! through hinrec-nn's trainer and implements the model contract of
//! hinrec-train.
//!
//! ```
//! use hinrec_data::synthetic::{generate, SyntheticConfig};
//! use hinrec_data::SplitRule;
//! use hinrec_neural_baselines::{lightgcn, LightGcnConfig};
//! use hinrec_train::{FitContext, Silent, Validation, ValidationData};
//!
//! let ds = generate(&SyntheticConfig { n_users: 40, n_items: 30, ..Default::default() })?;
//! let split = SplitRule::LeaveOneOutRandom.apply(&ds.implicit(), 1)?;
//! let validation = Validation {
//!     data: ValidationData::Full { valid: &split.test, train: &split.train },
//!     metric: "NDCG@10".into(),
//! };
//! let mut progress = Silent;
//! let ctx = &mut FitContext::new(&split, validation, 1, &mut progress);
//! let cfg = LightGcnConfig { dim: 8, layers: 2, epochs: 2, batch: 64, ..Default::default() };
//! let (model, summary) = lightgcn::fit(&cfg, ctx)?;
//! assert_eq!((model.dim(), summary.epochs), (8, 2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod error;
pub mod factors;
pub mod graph;
pub mod lightgcn;
pub mod neumf;
pub mod params;

pub use error::NeuralError;
pub use factors::Factors;
pub use graph::NormalizedGraph;
pub use lightgcn::LightGcnConfig;
pub use neumf::{NeuMf, NeuMfConfig, Towers};
