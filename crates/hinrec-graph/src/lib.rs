//! Typed heterogeneous information networks for hinrec.
//!
//! [`Hin`] holds one binary sparse adjacency matrix (sprs CSR, and its
//! transpose) per relation of a dataset, built from training interactions
//! only. [`MetaPath`] resolves a path of entity-type codes (`UMUM`,
//! `UBCaB`). [`product::commuting_matrix`] multiplies a meta-path's chain in
//! the cheapest order with a per-row [`RowRule`]; [`PairLabeler`] gives the
//! meta-path labels of chosen (user, item) pairs without building any
//! product, in memory linear in the graph. [`export::to_petgraph`] hands the
//! network to petgraph.
//!
//! ```
//! use hinrec_data::synthetic::{generate, SyntheticConfig};
//! use hinrec_graph::{Hin, MetaPath, PairLabeler, RowRule};
//! use hinrec_graph::product::commuting_matrix;
//!
//! let ds = generate(&SyntheticConfig { n_users: 50, n_items: 40, ..Default::default() })?;
//! let hin = Hin::from_dataset(&ds, &ds.interactions);
//! let uiui = MetaPath::parse(&hin, "UIUI")?;
//! let counts = commuting_matrix(&uiui.factors, RowRule::Count);
//! let labeler = PairLabeler::new(&hin, &["UIUI", "UIGI"], RowRule::AboveRowMean)?;
//! let labels = labeler.labels(&[(0, 3), (1, 7)])?;
//! assert_eq!(labels.len(), 2 * 2);
//! assert_eq!(counts.rows(), 50);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod error;
pub mod export;
pub mod hin;
pub mod labels;
pub mod metapath;
pub mod product;

pub use error::{GraphError, Result};
pub use hin::{Adjacency, Hin, NodeFeatures, NodeType};
pub use labels::PairLabeler;
pub use metapath::MetaPath;
pub use product::RowRule;
