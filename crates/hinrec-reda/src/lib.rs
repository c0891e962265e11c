//! REDA (reda.txt): latent relation embeddings between items with dual
//! attentions, for item-based recommendation.
//!
//! Each item has k embeddings of size d. A pair of items (i, j) gives k²
//! interacted vectors `p_i^n * p_j^l` (eq. 2); each reads a key-value memory
//! (eq. 3-5) and a weight attention pools the k² reads into the relation
//! embedding `r_ij` (eq. 6-8). A user is the sum of the relations among its
//! training items, `z_u` (eq. 9, over a bounded sample of pairs), and scores
//! an item i by `1/|R_u| sum_j z_u . r_ij` (eq. 11).
//!
//! Training is relation-wise (eq. 10): for a user's pair (i, j), a context
//! pair of its items should be closer to (i, j) than to (i, n) with an item
//! n the user never had. We minimise `-ln sigmoid(r_c.r_t - r_c.r_n)`; eq. 10
//! as printed sums `log sigmoid(r_c.r_n - r_c.r_t)`, which pushes the same
//! way but never saturates (docs/reda.md).
//!
//! Each batch gathers the k embeddings of its unique items once into a
//! small leaf tensor (only those rows see the gradient and the optimizer)
//! and forms all interactions as batched tensors.
//!
//! ```
//! use hinrec_data::{Interactions, Split};
//! use hinrec_reda::{Reda, RedaConfig};
//! use hinrec_train::{FitContext, Silent, Validation};
//!
//! let pairs: Vec<(u32, u32)> = (0..6u32).flat_map(|u| (0..4).map(move |i| (u, (u + i) % 8))).collect();
//! let split = Split {
//!     train: Interactions::from_pairs(6, 8, &pairs),
//!     valid: Interactions::empty(6, 8),
//!     test: Interactions::empty(6, 8),
//! };
//! let cfg = RedaConfig { dim: 8, aspects: 2, memory_slots: 4, batch: 8, epochs: 2, ..RedaConfig::default() };
//! let mut silent = Silent;
//! let mut ctx = FitContext::new(&split, Validation::none(), 1, &mut silent);
//! let (model, _) = Reda::fit(&cfg, &mut ctx)?;
//! let scores = model.score_pairs(&[(0, 5), (0, 7)])?;
//! assert_eq!(scores.len(), 2);
//! # Ok::<(), hinrec_reda::RedaError>(())
//! ```

pub mod network;
pub mod params;
mod softmax;
pub mod train;

pub use network::{Explanation, Reda};
pub use params::{RedaConfig, RedaError, Variant};
pub use train::{sample_triples, RelationTriple};
