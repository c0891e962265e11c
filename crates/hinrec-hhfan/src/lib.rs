//! HHFAN (hhfan.md): a modality-aware heterogeneous information graph
//! ([`graph::Mhig`]: users, items, attribute and quantised content nodes),
//! random-walk neighbour groups per node type (hinrec-sample's walks),
//! a hierarchical aggregation network ([`network::Hhfan`]: eq. 1-8) and
//! BPR training on walk-sampled triples ([`train`], eq. 9-10).
//!
//! ```
//! use hinrec_data::synthetic::{generate, SyntheticConfig};
//! use hinrec_data::SplitRule;
//! use hinrec_graph::Hin;
//! use hinrec_hhfan::{HhfanConfig, Hhfan};
//! use hinrec_train::{FitContext, Silent, Validation, ValidationData};
//!
//! let ds = generate(&SyntheticConfig { n_users: 40, n_items: 30, ..Default::default() })?;
//! let split = SplitRule::LeaveOneOutRandom.apply(&ds.implicit(), 1)?;
//! let hin = Hin::from_dataset(&ds, &split.train);
//! let cfg = HhfanConfig { dim: 8, epochs: 1, ..Default::default() };
//! let validation = Validation {
//!     data: ValidationData::Full { valid: &split.test, train: &split.train },
//!     metric: "NDCG@10".into(),
//! };
//! let mut progress = Silent;
//! let mut ctx = FitContext::new(&split, validation, 1, &mut progress);
//! ctx.hin = Some(&hin);
//! let (model, _) = Hhfan::fit(&cfg, &mut ctx)?;
//! assert_eq!(model.kinds().len(), 4); // user, item, age, genre
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod graph;
pub mod network;
pub mod params;
#[cfg(test)]
mod reference;
mod rows;
pub mod train;

pub use network::Hhfan;
pub use params::{HhfanConfig, HhfanError, Variant};
