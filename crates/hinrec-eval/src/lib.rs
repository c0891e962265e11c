//! Evaluation protocols and ranking metrics for hinrec.
//!
//! Every model implements [`Scorer`]: it scores candidate items for a user,
//! higher is better. The protocols rank a user's held-out items among
//! candidates and average [`metrics`] over users (or test pairs):
//!
//! - [`sampled`]: each test pair against its stored negatives;
//! - [`full_ranking`]: all items except the user's training and validation
//!   items;
//! - [`global_auc`]: one AUC over every test pair against its stored
//!   negatives;
//! - [`labelled_auc`]: DURation's ROC AUC over labelled rows (observed
//!   low ratings are the negatives), pooled and per item kind.
//!
//! Ties count against the positive, so a constant scorer gets zero (the
//! labelled ROC AUC counts them one half, as ROC AUC does).
//!
//! ```
//! use hinrec_data::{EvalNegatives, Interactions};
//! use hinrec_eval::{sampled, ScoreError, Scorer};
//!
//! /// Scores an item by its id: item 0 is best.
//! struct ById(usize);
//! impl Scorer for ById {
//!     fn n_items(&self) -> usize { self.0 }
//!     fn score_pairs(&self, pairs: &[(u32, u32)], out: &mut [f32]) -> Result<(), ScoreError> {
//!         for (o, &(_, i)) in out.iter_mut().zip(pairs) { *o = -(i as f32); }
//!         Ok(())
//!     }
//! }
//! let negatives = EvalNegatives { pairs: vec![(0, 1)], negatives: vec![vec![0, 2, 3]] };
//! let r = sampled(&ById(4), &negatives, &[1, 2])?;
//! assert_eq!(r.get("HR@1"), Some(0.0));
//! assert_eq!(r.get("HR@2"), Some(1.0));
//! # let _ = Interactions::empty(1, 4);
//! # Ok::<(), ScoreError>(())
//! ```

pub mod labelled;
pub mod metrics;
pub mod protocol;
pub mod pruned;
pub mod report;

pub use labelled::{labelled_auc, roc_auc, ItemKind};
pub use metrics::{ranks_against, UserMetrics};
pub use protocol::{
    check_len, check_pairs, check_users, full_ranking, global_auc, pooled, sampled,
    score_pairs_by_user, score_users_by_user, ScoreError, Scorer, MAX_SCORES_PER_CALL,
};
pub use pruned::{candidate_recall, pruned_ranking, Candidates, Pruned};
pub use report::{EvalReport, Metrics};
