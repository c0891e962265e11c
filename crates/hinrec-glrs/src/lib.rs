//! GLRS: attention on global and local representation spaces, with
//! cluster-index retrieval (Rattaphun, Fang and Chiu;
//! `../shared/papers/glrs-global-local-attention.txt`).
//!
//! Four representation networks map user and item IDs to unit vectors
//! (Fig. 2): GD and GP learn from global triplets (eq. 2) with the
//! distance (eq. 4) and product (eq. 3) losses; LD and LP learn from local
//! triplets around each user's nearest clusters of the GD item space (eq.
//! 5-6). An attention network weighs the spaces per user-item pair (eq.
//! 7-9). Recommendation probes the clusters nearest to the user and
//! re-ranks their items (Algorithm 1).
//!
//! - [`params`]: the parameters, the ten variants (AD, AP, GAD, GAP, LAD,
//!   LAP, GD, GP, LD, LP) and the model contract;
//! - [`network`]: the towers, the attention, and the trained [`Glrs`];
//! - [`train`]: triplets, losses and the staged fit;
//! - [`paper`]: the retrieval study behind Fig. 4 and Algorithm 1.
//!
//! ```
//! use hinrec_data::{synthetic, EvalNegatives, SplitRule};
//! use hinrec_eval::sampled;
//! use hinrec_glrs::{GlrsConfig, Glrs, Variant};
//! use hinrec_train::{FitContext, Silent, Validation};
//!
//! let ds = synthetic::generate(&synthetic::SyntheticConfig { n_users: 80, n_items: 60, ..Default::default() })?;
//! let split = SplitRule::LeaveOneOutRandom.apply(&ds.interactions, 1)?;
//! let negs = EvalNegatives::sample(&split.test, &[&split.train, &split.test], 20, 1)?;
//! let cfg = GlrsConfig { variant: Variant::Gap, epochs: 2, clusters: 4, lr: 0.01, ..GlrsConfig::default() };
//! let mut silent = Silent;
//! let mut ctx = FitContext::new(&split, Validation::none(), 1, &mut silent);
//! let (model, _) = Glrs::fit(&cfg, &mut ctx)?;
//! let m = sampled(&model, &negs, &[10]).map_err(|e| e.to_string())?;
//! assert!(m.get("HR@10").is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cache;
pub mod network;
pub mod paper;
pub mod params;
pub mod train;

pub use cache::clear as clear_cache;
pub use network::Glrs;
pub use params::{GlrsConfig, GlrsError, LocalInit, Loss, Space, Variant};
