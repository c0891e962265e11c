//! LGRec (lgrec.txt): local information by co-attention over neighbours plus
//! global information as a relation vector trained to predict meta-path
//! labels, joined in a translation score.
//!
//! For a pair (u, v): `X_u` are the embeddings of u's top-K1 training items
//! and `Y_v` of v's top-K2 training users, both ranked by a pretrained
//! BPR-MF (section 2.1). Co-attention `M = F(X_u) A G(Y_v)^T` with
//! max-pooling and a softmax over real neighbours gives `x_u`, `y_v`
//! (eq. 1-3); `z = MLP(x_u ⊕ y_v)` (eq. 5-6) predicts the pair's meta-path
//! labels (eq. 7-8); the score is `||x_u + z - y_v||²` (eq. 9), trained with a
//! hinge loss against a negative pair (the same user with an item it never
//! interacted with, eq. 10) plus `alpha` times the label loss and `beta`
//! times L2 (eq. 11).
//!
//! `F` and `G` depend only on a neighbour's id, so each batch evaluates them
//! once over its unique ids and gathers; embedding rows are updated row-wise
//! ([`hinrec_nn::embedding::EmbeddingTable`]).
//!
//! ```no_run
//! use hinrec_lgrec::{Lgrec, LgrecConfig};
//! use hinrec_train::{FitContext, Silent, Validation};
//! # fn run(hin: &hinrec_graph::Hin, split: &hinrec_data::Split, negs: &hinrec_data::EvalNegatives)
//! #   -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = LgrecConfig { meta_paths: vec!["UMUM".into(), "UMTM".into()], ..LgrecConfig::default() };
//! let mut silent = Silent;
//! let mut ctx = FitContext {
//!     hin: Some(hin),
//!     ..FitContext::new(split, Validation::sampled(negs), 1, &mut silent)
//! };
//! let (model, summary) = Lgrec::fit(&cfg, &mut ctx)?;
//! # Ok(()) }
//! ```

pub mod network;
pub mod params;
pub mod train;

pub use network::{Explanation, Lgrec};
pub use params::{LgrecConfig, LgrecError, Variant};
