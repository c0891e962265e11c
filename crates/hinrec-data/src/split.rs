//! Seeded, deterministic train/validation/test splits.
//!
//! Every split works on one [`Interactions`] and returns three sets over the
//! same id spaces. Random choices come from a ChaCha8 generator seeded with
//! the caller's seed, so a split is a pure function of its inputs.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::interactions::{Interactions, Record};

/// Training, validation and test interactions.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// What the model learns from.
    pub train: Interactions,
    /// For early stopping and hyper-parameters; carved from training data.
    pub valid: Interactions,
    /// Held out for the final figure only.
    pub test: Interactions,
}

/// How to hold out interactions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SplitRule {
    /// Each user's latest interaction (by timestamp; ties: the largest item
    /// id). Users with a single interaction keep it in training.
    #[serde(alias = "loo-latest")]
    LeaveOneOutLatest,
    /// One random interaction per user (users with one keep it).
    #[serde(alias = "loo-random")]
    LeaveOneOutRandom,
    /// Per user, `train` of the interactions (at least one) stay in training,
    /// the rest are held out.
    UserRatio {
        /// Fraction kept for training.
        train: f64,
    },
    /// Per user, `count` random interactions are held out, always leaving at
    /// least one in training.
    UserCount {
        /// Number held out per user.
        count: usize,
    },
    /// A global random split of all interactions: `train` and `valid`
    /// fractions, the rest test (DURation's 70/20/10).
    GlobalRatio {
        /// Training fraction.
        train: f64,
        /// Validation fraction.
        valid: f64,
    },
}

impl SplitRule {
    /// Applies the rule; `valid` is empty unless the rule makes one
    /// ([`SplitRule::GlobalRatio`]).
    pub fn apply(&self, data: &Interactions, seed: u64) -> Result<Split> {
        let (train, held) = self.hold_out(data, seed)?;
        match *self {
            SplitRule::GlobalRatio { train: t, valid: v } => {
                // `held` holds valid + test; divide it in the ratio asked for.
                let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0001);
                let mut rest: Vec<Record> = held.records().collect();
                rest.shuffle(&mut rng);
                let n_valid = ((v / (1.0 - t)) * rest.len() as f64).round() as usize;
                let test = rest.split_off(n_valid.min(rest.len()));
                let (nu, ni) = (data.n_users(), data.n_items());
                Ok(Split {
                    train,
                    valid: Interactions::from_records(nu, ni, rest),
                    test: Interactions::from_records(nu, ni, test),
                })
            }
            _ => Ok(Split {
                valid: Interactions::empty(data.n_users(), data.n_items()),
                train,
                test: held,
            }),
        }
    }

    /// Splits `data` into (kept, held out) by this rule.
    pub fn hold_out(&self, data: &Interactions, seed: u64) -> Result<(Interactions, Interactions)> {
        if data.is_empty() {
            return Err(DataError::Invalid(
                "cannot split an empty interaction set".into(),
            ));
        }
        self.check()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut held = Vec::new();
        let mut kept = Vec::new();
        match *self {
            SplitRule::GlobalRatio { train, .. } => {
                let mut all: Vec<Record> = data.records().collect();
                all.shuffle(&mut rng);
                let n_train = (train * all.len() as f64).round() as usize;
                held = all.split_off(n_train.min(all.len()));
                kept = all;
            }
            _ => {
                for u in 0..data.n_users() as u32 {
                    let mut recs: Vec<Record> = data.user_records(u).collect();
                    let n = recs.len();
                    let n_held = match *self {
                        SplitRule::LeaveOneOutLatest => {
                            // Latest last; among equal times the largest item last.
                            recs.sort_by_key(|r| (r.timestamp.unwrap_or(0), r.item));
                            usize::from(n > 1)
                        }
                        SplitRule::LeaveOneOutRandom => {
                            recs.shuffle(&mut rng);
                            usize::from(n > 1)
                        }
                        SplitRule::UserRatio { train } => {
                            recs.shuffle(&mut rng);
                            let keep = ((train * n as f64).round() as usize).max(1);
                            n.saturating_sub(keep)
                        }
                        SplitRule::UserCount { count } => {
                            recs.shuffle(&mut rng);
                            count.min(n.saturating_sub(1))
                        }
                        SplitRule::GlobalRatio { .. } => unreachable!("handled above"),
                    };
                    held.extend(recs.drain(n - n_held..));
                    kept.extend(recs);
                }
            }
        }
        let (nu, ni) = (data.n_users(), data.n_items());
        Ok((
            Interactions::from_records(nu, ni, kept),
            Interactions::from_records(nu, ni, held),
        ))
    }

    /// A short name for reports (`loo-latest`, `user-ratio-0.8`, ...).
    pub fn label(&self) -> String {
        match *self {
            SplitRule::LeaveOneOutLatest => "loo-latest".into(),
            SplitRule::LeaveOneOutRandom => "loo-random".into(),
            SplitRule::UserRatio { train } => format!("user-ratio-{train}"),
            SplitRule::UserCount { count } => format!("user-count-{count}"),
            SplitRule::GlobalRatio { train, valid } => format!("global-{train}-{valid}"),
        }
    }
}

impl SplitRule {
    /// Checks the rule's numbers before any data is read.
    pub fn check(&self) -> Result<()> {
        match *self {
            SplitRule::GlobalRatio { train, valid } => {
                check_fraction(train, "train")?;
                check_fraction(valid, "valid")?;
                if train + valid > 1.0 {
                    return Err(DataError::Invalid(format!(
                        "train {train} + valid {valid} exceeds 1"
                    )));
                }
                Ok(())
            }
            SplitRule::UserRatio { train } => check_fraction(train, "train"),
            SplitRule::UserCount { count: 0 } => Err(DataError::Invalid(
                "user-count: count must be at least 1".into(),
            )),
            _ => Ok(()),
        }
    }
}

fn check_fraction(x: f64, what: &str) -> Result<()> {
    if (0.0..=1.0).contains(&x) && x.is_finite() {
        Ok(())
    } else {
        Err(DataError::Invalid(format!(
            "{what} fraction {x} is not in [0, 1]"
        )))
    }
}

impl Split {
    /// Moves part of the training set into validation by `rule`, leaving the
    /// test set untouched. Used for early stopping and tuning.
    pub fn carve_validation(mut self, rule: SplitRule, seed: u64) -> Result<Self> {
        let (train, valid) = rule.hold_out(&self.train, seed)?;
        self.train = train;
        self.valid = self.valid.union(&valid);
        Ok(self)
    }

    /// Every interaction of `user` outside the test set (training and
    /// validation): what full ranking excludes when testing.
    pub fn known_items(&self, user: u32) -> impl Iterator<Item = u32> + '_ {
        self.train
            .user_items(user)
            .iter()
            .chain(self.valid.user_items(user))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Interactions {
        let mut recs = Vec::new();
        for u in 0..5u32 {
            for i in 0..(u + 1) * 2 {
                recs.push(Record {
                    user: u,
                    item: i,
                    rating: None,
                    // item 1 and 3 share the latest time for user 2
                    timestamp: Some(if u == 2 && (i == 1 || i == 3) {
                        100
                    } else {
                        i as i64
                    }),
                });
            }
        }
        Interactions::from_records(5, 10, recs)
    }

    #[test]
    fn leave_one_out_latest_breaks_ties_by_largest_item() {
        let d = data();
        let s = SplitRule::LeaveOneOutLatest.apply(&d, 0).unwrap();
        assert_eq!(s.test.user_items(0), &[1]);
        assert_eq!(s.test.user_items(2), &[3]);
        assert_eq!(s.test.user_items(4), &[9]);
        assert_eq!(s.train.nnz() + s.test.nnz(), d.nnz());
        assert!(s.valid.is_empty());
    }

    #[test]
    fn splits_are_deterministic_and_partition_the_data() {
        let d = data();
        for rule in [
            SplitRule::LeaveOneOutRandom,
            SplitRule::UserRatio { train: 0.6 },
            SplitRule::UserCount { count: 3 },
            SplitRule::GlobalRatio {
                train: 0.7,
                valid: 0.2,
            },
        ] {
            let a = rule.apply(&d, 7).unwrap();
            assert_eq!(a, rule.apply(&d, 7).unwrap(), "{rule:?}");
            assert_eq!(
                a.train.nnz() + a.valid.nnz() + a.test.nnz(),
                d.nnz(),
                "{rule:?}"
            );
            assert_eq!(a.train.union(&a.valid).union(&a.test), d, "{rule:?}");
        }
    }

    #[test]
    fn per_user_rules_keep_a_training_item() {
        let d = data();
        let s = SplitRule::UserCount { count: 3 }.apply(&d, 1).unwrap();
        assert_eq!(s.test.user_degree(0), 1);
        assert_eq!(s.train.user_degree(0), 1);
        assert_eq!(s.test.user_degree(4), 3);
        let r = SplitRule::UserRatio { train: 0.8 }.apply(&d, 1).unwrap();
        assert_eq!(r.train.user_degree(4), 8);
        assert_eq!(r.test.user_degree(4), 2);
        let g = SplitRule::GlobalRatio {
            train: 0.7,
            valid: 0.2,
        }
        .apply(&d, 1)
        .unwrap();
        assert_eq!(g.train.nnz(), 21);
        assert_eq!(g.valid.nnz(), 6);
    }

    #[test]
    fn validation_is_carved_from_training_only() {
        let d = data();
        let s = SplitRule::LeaveOneOutLatest.apply(&d, 0).unwrap();
        let test = s.test.clone();
        let v = s.carve_validation(SplitRule::LeaveOneOutLatest, 0).unwrap();
        assert_eq!(v.test, test);
        assert_eq!(v.valid.user_items(4), &[8]);
        assert!(SplitRule::UserRatio { train: 1.5 }.apply(&d, 0).is_err());
    }
}
