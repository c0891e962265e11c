//! Datasets for hinrec.
//!
//! A dataset is described by a small TOML [`Manifest`]: entity types, the
//! user-item interaction files and their columns, side relations, dense
//! features and an optional given split. Loading one gives a [`Dataset`] with
//! dense 0-based ids, [`Interactions`] in CSR form both ways, relations and
//! features. [`SplitRule`] makes seeded splits, [`EvalNegatives`] stores the
//! candidates every model is compared on, [`LabelledSplit`] keeps low
//! ratings as observed negatives (DURation's protocol), and [`synthetic`] generates a small
//! heterogeneous dataset for demos and tests.
//!
//! Bad input never panics: every error names the file and line (columns
//! count from 0, as in manifests). Ids are numeric and checked unless an
//! entity declares `ids = "tokens"`; every file read is hashed
//! ([`Dataset::sources`], [`DataFingerprint`]).
//!
//! ```
//! use hinrec_data::{synthetic, SplitRule, EvalNegatives};
//!
//! let ds = synthetic::generate(&synthetic::SyntheticConfig::default())?;
//! let split = SplitRule::LeaveOneOutLatest
//!     .apply(&ds.interactions, 1)?
//!     .carve_validation(SplitRule::LeaveOneOutLatest, 1)?;
//! let negatives = EvalNegatives::sample(
//!     &split.test, &[&split.train, &split.valid, &split.test], 100, 1)?;
//! assert_eq!(negatives.len(), split.test.nnz());
//! # Ok::<(), hinrec_data::DataError>(())
//! ```

pub mod dataset;
pub mod error;
pub mod filter;
pub mod fingerprint;
pub mod ids;
pub mod interactions;
pub mod labels;
pub mod manifest;
pub mod negatives;
pub mod npy;
pub mod registry;
pub mod split;
pub mod stats;
pub mod synthetic;
pub mod text;

pub use dataset::{Dataset, Entity, Features, Relation, SourceFile};
pub use error::{DataError, Result};
pub use fingerprint::DataFingerprint;
pub use ids::IdMap;
pub use interactions::{Interactions, Record};
pub use labels::{sampled_labels, LabelRule, LabelledSplit};
pub use manifest::Manifest;
pub use negatives::{Against, EvalNegatives, Ids, PlainIds};
pub use split::{Split, SplitRule};
